//! The uniffi layer: objects over the core's values, the adapter for the
//! app's store, and the conveniences that read the clock (the `*_now`
//! methods, the only place that does).
//!
//! The core's records, enums and its error are exported as they are: they
//! carry `#[cfg_attr(feature = "ffi", derive(uniffi::...))]` where they are
//! defined, with numbers Kotlin and Swift read as plain signed integers and
//! times as [`crate::UnixTime`] and HOTP counters as [`crate::Counter`]
//! (custom types). The core types that hold another object (a key URI holds
//! a secret, an issued code a ticket) are objects here, since a uniffi record
//! holds objects only as `Arc`s. Besides objects, only the app's store
//! interface (`DeviceStateStore`) and the error it throws (`StoreError`)
//! are defined here; no record or enum restates a core type.

use crate::time::whole_secs;
use crate::UnixTime;

/// The device's clock now.
fn now() -> UnixTime {
    UnixTime::now()
}

/// Kotlin and Swift pass counts and sequences as signed integers; the core
/// counts from 0.
fn unsigned<T: TryFrom<i64>>(n: impl Into<i64>, what: &str) -> FfiResult<T> {
    let n = n.into();
    T::try_from(n).map_err(|_| crate::Error::InvalidNumber {
        what: what.to_string(),
        reason: format!("{n} is negative or too large"),
    })
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
