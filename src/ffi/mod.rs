//! The uniffi layer: objects over the core's values, the adapter for the
//! app's store, and the conveniences that read the clock (the `*_now`
//! methods, the only place that does).
//!
//! The core's records, enums and its error are exported as they are: they
//! carry `#[cfg_attr(feature = "ffi", derive(uniffi::...))]` where they are
//! defined, with numbers Kotlin and Swift read as plain signed integers and
//! times as [`crate::UnixTime`]. Five records are still defined here, each a
//! shape uniffi cannot take from the core as it is: `IssuedCode` and `KeyUri`
//! hold objects (uniffi records hold objects only as `Arc`s of exported
//! objects), `OtpKind` and `TotpMatch` carry RFC 4226/6238 64-bit unsigned
//! counters (uniffi would make them `ULong`), and `ReceiptOutcome` is the
//! app's account of the handover, which the core takes as an outcome and an
//! attempt count apart.

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

/// RFC 4226's counter is 8 unsigned bytes; Kotlin's `Long` and Swift's
/// `Int64` carry the same 64 bits (Java's convention: counters past
/// `Long.MAX_VALUE` are negative, and `Long.toUnsignedString` prints them).
fn counter_bits(counter: i64) -> u64 {
    u64::from_be_bytes(counter.to_be_bytes())
}

/// The counter back as Kotlin's and Swift's 64 bits.
fn counter_long(counter: u64) -> i64 {
    i64::from_be_bytes(counter.to_be_bytes())
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
