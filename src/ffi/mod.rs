//! The uniffi layer: the only module that knows about Kotlin and Swift.
//!
//! Thin delegation to the core. Objects wrap core values, records and enums
//! mirror core types with `From` conversions, and every core error becomes an
//! [`OtpError`] whose message is the core's message. The `*_now` methods are
//! the only place that reads the clock.

use std::time::{SystemTime, UNIX_EPOCH};

use crate::error::Error as CoreError;

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

/// Everything that can go wrong in delivery-otp. Messages never contain a
/// code or a secret.
///
/// Exported as a flat error: Kotlin sees one `OtpException` subclass and
/// Swift one `OtpError` case per variant, each carrying the library's
/// readable message (which states the numbers below, such as the position of
/// a bad base32 character). The fields exist on the Rust side only.
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Error)]
#[uniffi(flat_error)]
pub enum OtpError {
    /// The number of digits is outside 6 to 10.
    InvalidDigits {
        /// The rejected number of digits.
        digits: u32,
        /// The smallest supported number.
        min: u32,
        /// The largest supported number.
        max: u32,
    },
    /// A TOTP time step of zero seconds.
    InvalidPeriod,
    /// A secret with no bytes at all.
    EmptySecret,
    /// A new secret below 128 bits.
    SecretTooShort {
        /// The requested size in bits.
        bits: u64,
        /// The smallest size the library creates.
        min_bits: u64,
    },
    /// A new secret above 1024 bits.
    SecretTooLong {
        /// The requested size in bits.
        bits: u64,
        /// The largest size the library creates.
        max_bits: u64,
    },
    /// The operating system's random generator failed.
    RandomUnavailable,
    /// A character base32 does not allow, at a position counted from 1.
    InvalidBase32Character {
        /// Position of the offending character, counting from 1.
        position: u64,
    },
    /// Base32 text whose length encodes no whole number of bytes.
    InvalidBase32Length {
        /// Number of base32 characters without padding and separators.
        length: u64,
    },
    /// A time before the TOTP start time T0.
    TimeBeforeStart {
        /// The rejected time, unix seconds.
        time: u64,
        /// The configured T0, unix seconds.
        t0: u64,
    },
    /// A verification window wider than 100 on a side.
    WindowTooLarge {
        /// The requested window.
        requested: u64,
        /// The largest window allowed.
        max: u64,
    },
    /// Entered text that is not a code of the right length.
    MalformedCode {
        /// How many digits a code has.
        expected_digits: u32,
    },
    /// A key URI that does not start with `otpauth://`.
    UnsupportedScheme,
    /// A key URI type other than `totp` or `hotp`.
    UnknownOtpType,
    /// A key URI label without an account name.
    MissingAccount,
    /// A key URI without a `secret` parameter.
    MissingSecret,
    /// An `hotp` key URI without a `counter` parameter.
    MissingCounter,
    /// A key URI parameter whose value cannot be used.
    InvalidParameter {
        /// The parameter's name.
        name: String,
        /// What is wrong with its value.
        reason: String,
    },
    /// A key URI parameter given twice.
    DuplicateParameter {
        /// The parameter's name.
        name: String,
    },
    /// A key URI parameter that does not belong to its type.
    ParameterNotAllowed {
        /// The parameter's name.
        name: String,
        /// `totp` or `hotp`.
        otp_type: String,
    },
    /// An algorithm other than SHA1, SHA256 or SHA512.
    UnsupportedAlgorithm,
    /// The label's issuer prefix and the `issuer` parameter differ.
    IssuerMismatch,
    /// An issuer or account that cannot be written into a key URI label.
    InvalidLabel {
        /// `issuer` or `account`.
        field: String,
        /// What is wrong with it.
        reason: String,
    },
    /// Percent-encoding that does not decode to UTF-8.
    InvalidPercentEncoding {
        /// Which part of the URI.
        part: String,
    },
    /// A key id that cannot be used.
    InvalidKeyId {
        /// What is wrong with it.
        reason: String,
    },
    /// No key with this id in the key set.
    UnknownKeyId {
        /// The id asked for.
        key_id: String,
    },
    /// Key material of the wrong size or encoding.
    InvalidKey {
        /// What is wrong with it.
        reason: String,
    },
    /// A key set that cannot be read or used.
    InvalidKeySet {
        /// What is wrong with it.
        reason: String,
    },
    /// A delivery id that cannot be used.
    InvalidDeliveryId {
        /// What is wrong with it.
        reason: String,
    },
    /// A code format the library does not support, or a short one without the opt-in.
    InvalidCodeFormat {
        /// What is wrong with it.
        reason: String,
    },
    /// Settings that would weaken the check or let a ticket reveal the code.
    UnsafeSettings {
        /// Why they are refused.
        reason: String,
    },
    /// A typed character that cannot be part of a code, at a position counted from 1.
    InvalidCodeCharacter {
        /// Position of the character.
        position: u64,
    },
    /// A typed code with too many or too few characters.
    WrongCodeLength {
        /// Characters in a code.
        expected: u32,
        /// Characters typed, without separators.
        found: u64,
    },
    /// A ticket that cannot be read or whose fields are inconsistent.
    InvalidTicket {
        /// What is wrong with it.
        reason: String,
    },
    /// A ticket of an unknown format version.
    UnsupportedTicketVersion {
        /// The ticket's version.
        version: u64,
        /// The version this library reads.
        supported: u64,
    },
    /// A ticket changed after issuing, or issued with another key.
    TicketMacMismatch,
    /// The app's attempt-state storage failed.
    StateStorage {
        /// What the storage reported.
        reason: String,
    },
    /// Stored attempt state that cannot be read.
    CorruptState {
        /// What is wrong with it.
        reason: String,
    },
    /// A receipt that cannot be read or made.
    InvalidReceipt {
        /// What is wrong with it.
        reason: String,
    },
    /// A receipt of an unknown format version.
    UnsupportedReceiptVersion {
        /// The receipt's version.
        version: u64,
        /// The version this library reads.
        supported: u64,
    },
    /// A receipt changed after it was made, or made with another device key.
    ReceiptMacMismatch,
    /// A second, different receipt for a ticket that already has one.
    ReceiptConflict {
        /// The fields that differ.
        fields: String,
    },
    /// A device key that cannot be read or used.
    InvalidDeviceKey {
        /// What is wrong with it.
        reason: String,
    },
    /// A device's request signature that does not hold.
    InvalidRequestSignature {
        /// What is wrong with it.
        reason: String,
    },
    /// Risk-policy rules that cannot be used.
    InvalidPolicy {
        /// The field.
        field: String,
        /// What is wrong with it.
        reason: String,
    },
    /// An order the policy cannot judge.
    InvalidOrder {
        /// The field.
        field: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A message template, or a value for one, that cannot be used.
    InvalidTemplate {
        /// The field.
        field: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A phone number or e-mail address that cannot be read.
    InvalidContact {
        /// What is wrong with it.
        reason: String,
    },
    /// A number would leave its range.
    Overflow {
        /// Which number.
        what: String,
    },
}

impl std::error::Error for OtpError {}

impl std::fmt::Display for OtpError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        CoreError::from(self.clone()).fmt(f)
    }
}

/// Maps each core variant to the FFI variant of the same name, and back.
/// Written once as a table so the two directions cannot drift apart.
macro_rules! error_mapping {
    ($( $variant:ident $({ $($field:ident),* })? ),* $(,)?) => {
        impl From<CoreError> for OtpError {
            fn from(e: CoreError) -> Self {
                match e {
                    $( CoreError::$variant $({ $($field),* })? => OtpError::$variant $({ $($field),* })?, )*
                }
            }
        }

        impl From<OtpError> for CoreError {
            fn from(e: OtpError) -> Self {
                match e {
                    $( OtpError::$variant $({ $($field),* })? => CoreError::$variant $({ $($field),* })?, )*
                }
            }
        }
    };
}

error_mapping! {
    InvalidDigits { digits, min, max },
    InvalidPeriod,
    EmptySecret,
    SecretTooShort { bits, min_bits },
    SecretTooLong { bits, max_bits },
    RandomUnavailable,
    InvalidBase32Character { position },
    InvalidBase32Length { length },
    TimeBeforeStart { time, t0 },
    WindowTooLarge { requested, max },
    MalformedCode { expected_digits },
    UnsupportedScheme,
    UnknownOtpType,
    MissingAccount,
    MissingSecret,
    MissingCounter,
    InvalidParameter { name, reason },
    DuplicateParameter { name },
    ParameterNotAllowed { name, otp_type },
    UnsupportedAlgorithm,
    IssuerMismatch,
    InvalidLabel { field, reason },
    InvalidPercentEncoding { part },
    InvalidKeyId { reason },
    UnknownKeyId { key_id },
    InvalidKey { reason },
    InvalidKeySet { reason },
    InvalidDeliveryId { reason },
    InvalidCodeFormat { reason },
    UnsafeSettings { reason },
    InvalidCodeCharacter { position },
    WrongCodeLength { expected, found },
    InvalidTicket { reason },
    UnsupportedTicketVersion { version, supported },
    TicketMacMismatch,
    StateStorage { reason },
    CorruptState { reason },
    InvalidReceipt { reason },
    UnsupportedReceiptVersion { version, supported },
    ReceiptMacMismatch,
    ReceiptConflict { fields },
    InvalidDeviceKey { reason },
    InvalidRequestSignature { reason },
    InvalidPolicy { field, reason },
    InvalidOrder { field, reason },
    InvalidTemplate { field, reason },
    InvalidContact { reason },
    Overflow { what },
}

type FfiResult<T> = Result<T, OtpError>;
