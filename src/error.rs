//! The one error type of the core.
//!
//! Messages are written for the engineer reading a log or a crash report. They
//! never contain a code, a secret or a fragment of either: a bad base32
//! character is reported by position, never by value.

/// Everything that can go wrong in this crate.
///
/// Each variant is a stable kind; its message says what was wrong and, where
/// it helps, what would be right.
///
/// Numbers in the fields are `i64` so that Kotlin, Swift and Java read them as
/// plain signed integers; a count beyond `i64::MAX` (never a real position,
/// length or version) is reported as `i64::MAX`.
///
/// Rust code calls it [`Error`] (an alias). With the `ffi` feature this is the
/// error Kotlin sees as `OtpException` and Swift as `OtpError`, one case per
/// variant with the same fields and this message as the description.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[cfg_attr(feature = "ffi", derive(uniffi::Error))]
#[cfg_attr(feature = "ffi", uniffi::export(Display))]
#[non_exhaustive]
pub enum OtpError {
    /// The number of digits is outside what the library supports.
    #[error("a one-time password has {min} to {max} digits; {digits} were asked for")]
    InvalidDigits {
        /// The rejected number of digits.
        digits: i64,
        /// The smallest supported number.
        min: i64,
        /// The largest supported number.
        max: i64,
    },

    /// A TOTP time step of zero seconds or with a fraction of a second.
    #[error("the TOTP time step must be whole seconds, at least 1")]
    InvalidPeriod,

    /// A secret with no bytes at all.
    #[error("the secret is empty")]
    EmptySecret,

    /// A new secret shorter than RFC 4226 allows.
    #[error("a new secret must have at least {min_bits} bits (RFC 4226 section 4, R6); {bits} were asked for")]
    SecretTooShort {
        /// The requested size in bits.
        bits: i64,
        /// The smallest size the library creates.
        min_bits: i64,
    },

    /// A new secret larger than any HMAC block can use.
    #[error("a new secret may have at most {max_bits} bits; {bits} were asked for")]
    SecretTooLong {
        /// The requested size in bits.
        bits: i64,
        /// The largest size the library creates.
        max_bits: i64,
    },

    /// The operating system's random generator failed.
    #[error("the operating system's random generator is unavailable")]
    RandomUnavailable,

    /// A character that base32 (RFC 4648) does not allow.
    #[error("invalid base32 character at position {position} (counting from 1); allowed are A-Z, 2-7, '=' padding at the end, spaces and dashes")]
    InvalidBase32Character {
        /// Position of the offending character, counting characters from 1.
        position: i64,
    },

    /// Base32 text whose length no byte string encodes to.
    #[error("base32 text of {length} characters (without padding and separators) is not a whole number of bytes")]
    InvalidBase32Length {
        /// Number of base32 characters, without padding and separators.
        length: i64,
    },

    /// A time before the TOTP start time T0.
    #[error("unix time {time} is before the TOTP start time T0 = {t0}")]
    TimeBeforeStart {
        /// The rejected time, unix seconds.
        time: i64,
        /// The configured T0, unix seconds.
        t0: i64,
    },

    /// A verification window wider than the library allows.
    #[error("a verification window may span at most {max} steps or counters on each side; {requested} were asked for")]
    WindowTooLarge {
        /// The requested window.
        requested: i64,
        /// The largest window allowed.
        max: i64,
    },

    /// Entered text that cannot be a code of this length.
    #[error("a code is exactly {expected_digits} decimal digits (spaces allowed between them)")]
    MalformedCode {
        /// How many digits a code has.
        expected_digits: i64,
    },

    /// A key URI that does not start with `otpauth://`.
    #[error("a key URI starts with otpauth://")]
    UnsupportedScheme,

    /// A key URI whose type is neither `totp` nor `hotp`.
    #[error("the key URI type must be totp or hotp")]
    UnknownOtpType,

    /// A key URI whose label has no account name.
    #[error("the key URI label has no account name")]
    MissingAccount,

    /// A key URI without the `secret` parameter.
    #[error("the key URI has no secret parameter")]
    MissingSecret,

    /// An `hotp` key URI without the `counter` parameter.
    #[error("an hotp key URI needs a counter parameter")]
    MissingCounter,

    /// A key URI parameter whose value cannot be used.
    #[error("the key URI parameter '{name}' is invalid: {reason}")]
    InvalidParameter {
        /// The parameter's name.
        name: String,
        /// What is wrong with its value.
        reason: String,
    },

    /// A key URI parameter given twice.
    #[error("the key URI parameter '{name}' appears more than once")]
    DuplicateParameter {
        /// The parameter's name.
        name: String,
    },

    /// A key URI parameter that does not belong to its type.
    #[error("the key URI parameter '{name}' does not apply to {otp_type} keys")]
    ParameterNotAllowed {
        /// The parameter's name.
        name: String,
        /// `totp` or `hotp`.
        otp_type: String,
    },

    /// An algorithm other than SHA1, SHA256 or SHA512.
    #[error("the algorithm must be SHA1, SHA256 or SHA512")]
    UnsupportedAlgorithm,

    /// The label's issuer prefix and the `issuer` parameter differ.
    #[error("the issuer in the key URI label differs from the issuer parameter")]
    IssuerMismatch,

    /// An issuer or account that cannot be written into a key URI label.
    #[error("the {field} is invalid: {reason}")]
    InvalidLabel {
        /// `issuer` or `account`.
        field: String,
        /// What is wrong with it.
        reason: String,
    },

    /// Percent-encoding that does not decode to UTF-8 text.
    #[error("the key URI {part} is not valid percent-encoded UTF-8")]
    InvalidPercentEncoding {
        /// Which part of the URI: `label` or a parameter name.
        part: String,
    },

    /// A key id that cannot be used.
    #[error("invalid key id: {reason}")]
    InvalidKeyId {
        /// What is wrong with it.
        reason: String,
    },

    /// No key with this id in the key set.
    #[error("no key with id '{key_id}' in the key set")]
    UnknownKeyId {
        /// The id asked for (key ids are not secret).
        key_id: String,
    },

    /// Key material of the wrong size or encoding.
    #[error("invalid key: {reason}")]
    InvalidKey {
        /// What is wrong with it (never the key itself).
        reason: String,
    },

    /// A key set that cannot be read or used.
    #[error("invalid key set: {reason}")]
    InvalidKeySet {
        /// What is wrong with it.
        reason: String,
    },

    /// A delivery id that cannot be used.
    #[error("invalid delivery id: {reason}")]
    InvalidDeliveryId {
        /// What is wrong with it.
        reason: String,
    },

    /// A code format the library does not support.
    #[error("invalid code format: {reason}")]
    InvalidCodeFormat {
        /// What is wrong with it.
        reason: String,
    },

    /// Settings that would weaken the check or let a ticket reveal the code.
    #[error("unsafe settings: {reason}")]
    UnsafeSettings {
        /// Why they are refused.
        reason: String,
    },

    /// A character in an entered code that is neither a digit, a code letter
    /// nor a separator.
    #[error("the entered code has a character that cannot be part of a code at position {position} (counting from 1)")]
    InvalidCodeCharacter {
        /// Position of the character, counting characters from 1.
        position: i64,
    },

    /// An entered code with too many or too few characters.
    #[error("a code has {expected} characters; {found} were entered")]
    WrongCodeLength {
        /// Characters in a code of this format.
        expected: i64,
        /// Characters entered, without separators.
        found: i64,
    },

    /// A ticket that cannot be read, or whose fields are not consistent.
    #[error("invalid ticket: {reason}")]
    InvalidTicket {
        /// What is wrong with it.
        reason: String,
    },

    /// A ticket of a format version this library does not read.
    #[error("unsupported ticket version {version}; this library reads version {supported}")]
    UnsupportedTicketVersion {
        /// The ticket's version.
        version: i64,
        /// The version this library reads.
        supported: i64,
    },

    /// A ticket whose backend MAC does not match its fields.
    #[error(
        "the ticket's MAC does not match: it was changed after issuing, or issued with another key"
    )]
    TicketMacMismatch,

    /// The app's attempt-state storage failed.
    #[error("the attempt state storage failed: {reason}")]
    StateStorage {
        /// What the storage reported.
        reason: String,
    },

    /// Stored attempt state that cannot be read.
    #[error("the stored attempt state is corrupt: {reason}")]
    CorruptState {
        /// What is wrong with it.
        reason: String,
    },

    /// A receipt that cannot be read or made, or whose fields are not consistent.
    #[error("invalid receipt: {reason}")]
    InvalidReceipt {
        /// What is wrong with it (never the code it carries).
        reason: String,
    },

    /// A receipt of a format version this library does not read.
    #[error("unsupported receipt version {version}; this library reads version {supported}")]
    UnsupportedReceiptVersion {
        /// The receipt's version.
        version: i64,
        /// The version this library reads.
        supported: i64,
    },

    /// A receipt whose device MAC does not match its fields.
    #[error("the receipt's MAC does not match: it was changed after it was made, or made with another device key")]
    ReceiptMacMismatch,

    /// A second, different receipt for a ticket this device already made one for.
    #[error("a receipt for this ticket already exists and differs in {fields}; get the stored one instead of making a new one")]
    ReceiptConflict {
        /// The fields that differ (names only, never values).
        fields: String,
    },

    /// A device key that cannot be read or used.
    #[error("invalid device key: {reason}")]
    InvalidDeviceKey {
        /// What is wrong with it (never the key itself).
        reason: String,
    },

    /// A device's request signature that is missing, malformed, outside the
    /// time window, or does not match the request.
    #[error("invalid request signature: {reason}")]
    InvalidRequestSignature {
        /// What is wrong with it (never the key).
        reason: String,
    },

    /// Risk-policy rules that cannot be used.
    #[error("invalid policy rules at {field}: {reason}")]
    InvalidPolicy {
        /// The field, as a path such as `tiers.strict.hash_bits`.
        field: String,
        /// What is wrong with it.
        reason: String,
    },

    /// An order the policy cannot judge.
    #[error("invalid order at {field}: {reason}")]
    InvalidOrder {
        /// The field.
        field: String,
        /// What is wrong with it.
        reason: String,
    },

    /// A message template, or a value for one, that cannot be used.
    #[error("invalid message template at {field}: {reason}")]
    InvalidTemplate {
        /// The field, such as `locales.de.sms`.
        field: String,
        /// What is wrong with it.
        reason: String,
    },

    /// A phone number or e-mail address that cannot be read.
    #[error("invalid contact: {reason}")]
    InvalidContact {
        /// What is wrong with it (never the whole contact).
        reason: String,
    },

    /// A number given from outside the range it has (a negative count from
    /// Kotlin or Swift, a sequence past 2^63 - 1, a duration with a fraction
    /// of a second).
    #[error("invalid {what}: {reason}")]
    InvalidNumber {
        /// Which number.
        what: String,
        /// What its range is.
        reason: String,
    },

    /// A number would leave its range (a sequence at its maximum, a time past `u64::MAX`).
    #[error("{what} would overflow")]
    Overflow {
        /// Which number.
        what: String,
    },
}

/// The crate's error, by the name Rust code uses; the same type as
/// [`OtpError`], the name Kotlin and Swift know it by.
pub type Error = OtpError;

impl OtpError {
    /// The variant's stable name in snake case (`invalid_base32_character`),
    /// for logs, metrics and the shared test vectors.
    pub fn kind(&self) -> &'static str {
        match self {
            Error::InvalidDigits { .. } => "invalid_digits",
            Error::InvalidPeriod => "invalid_period",
            Error::EmptySecret => "empty_secret",
            Error::SecretTooShort { .. } => "secret_too_short",
            Error::SecretTooLong { .. } => "secret_too_long",
            Error::RandomUnavailable => "random_unavailable",
            Error::InvalidBase32Character { .. } => "invalid_base32_character",
            Error::InvalidBase32Length { .. } => "invalid_base32_length",
            Error::TimeBeforeStart { .. } => "time_before_start",
            Error::WindowTooLarge { .. } => "window_too_large",
            Error::MalformedCode { .. } => "malformed_code",
            Error::UnsupportedScheme => "unsupported_scheme",
            Error::UnknownOtpType => "unknown_otp_type",
            Error::MissingAccount => "missing_account",
            Error::MissingSecret => "missing_secret",
            Error::MissingCounter => "missing_counter",
            Error::InvalidParameter { .. } => "invalid_parameter",
            Error::DuplicateParameter { .. } => "duplicate_parameter",
            Error::ParameterNotAllowed { .. } => "parameter_not_allowed",
            Error::UnsupportedAlgorithm => "unsupported_algorithm",
            Error::IssuerMismatch => "issuer_mismatch",
            Error::InvalidLabel { .. } => "invalid_label",
            Error::InvalidPercentEncoding { .. } => "invalid_percent_encoding",
            Error::InvalidKeyId { .. } => "invalid_key_id",
            Error::UnknownKeyId { .. } => "unknown_key_id",
            Error::InvalidKey { .. } => "invalid_key",
            Error::InvalidKeySet { .. } => "invalid_key_set",
            Error::InvalidDeliveryId { .. } => "invalid_delivery_id",
            Error::InvalidCodeFormat { .. } => "invalid_code_format",
            Error::UnsafeSettings { .. } => "unsafe_settings",
            Error::InvalidCodeCharacter { .. } => "invalid_code_character",
            Error::WrongCodeLength { .. } => "wrong_code_length",
            Error::InvalidTicket { .. } => "invalid_ticket",
            Error::UnsupportedTicketVersion { .. } => "unsupported_ticket_version",
            Error::TicketMacMismatch => "ticket_mac_mismatch",
            Error::StateStorage { .. } => "state_storage",
            Error::CorruptState { .. } => "corrupt_state",
            Error::InvalidReceipt { .. } => "invalid_receipt",
            Error::UnsupportedReceiptVersion { .. } => "unsupported_receipt_version",
            Error::ReceiptMacMismatch => "receipt_mac_mismatch",
            Error::ReceiptConflict { .. } => "receipt_conflict",
            Error::InvalidDeviceKey { .. } => "invalid_device_key",
            Error::InvalidRequestSignature { .. } => "invalid_request_signature",
            Error::InvalidPolicy { .. } => "invalid_policy",
            Error::InvalidOrder { .. } => "invalid_order",
            Error::InvalidTemplate { .. } => "invalid_template",
            Error::InvalidContact { .. } => "invalid_contact",
            Error::InvalidNumber { .. } => "invalid_number",
            Error::Overflow { .. } => "overflow",
        }
    }
}

/// `n` as an error field holds it: unchanged, or `i64::MAX` beyond that.
pub(crate) fn int<T>(n: T) -> i64
where
    i64: TryFrom<T>,
{
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// A count (attempts, bits, characters; all far below 2^31) as outcomes and
/// records hold it for Kotlin's and Swift's plain integers: unchanged, or
/// `i32::MAX` beyond that.
pub(crate) fn count<T>(n: T) -> i32
where
    i32: TryFrom<T>,
{
    i32::try_from(n).unwrap_or(i32::MAX)
}

/// Shorthand for results of this crate.
pub type Result<T> = core::result::Result<T, Error>;

/// Longest run of characters without a space that an error message repeats
/// from its input (an id, a JSON key, a value quoted by the JSON parser).
pub const MAX_ECHOED_RUN_CHARS: usize = 64;

/// Longest text taken from input (a parser's own message included) that
/// an error message holds, in characters.
pub const MAX_ECHOED_CHARS: usize = 300;

/// `text`, taken from input, as an error message may hold it: on one line
/// (control characters written as `\u{..}`), every run of more than
/// [`MAX_ECHOED_RUN_CHARS`] characters without a space cut with `…`, and
/// the whole cut at [`MAX_ECHOED_CHARS`]. A megabyte JSON key so gives a
/// short message, and a newline in a value cannot forge a second log line.
pub(crate) fn echoed(text: &str) -> String {
    let mut out = String::new();
    let mut written = 0usize;
    let mut run = 0usize;
    for c in text.chars() {
        if written >= MAX_ECHOED_CHARS {
            out.push('…');
            break;
        }
        if c == ' ' {
            run = 0;
        } else {
            run = run.saturating_add(1);
            if run > MAX_ECHOED_RUN_CHARS {
                if run == MAX_ECHOED_RUN_CHARS.saturating_add(1) {
                    out.push('…');
                    written = written.saturating_add(1);
                }
                continue;
            }
        }
        if c.is_control() {
            out.push_str(&c.escape_unicode().to_string());
        } else {
            out.push(c);
        }
        written = written.saturating_add(1);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::echoed;

    #[test]
    fn echoed_text_is_short_and_on_one_line() {
        assert_eq!(
            echoed("unknown field `a`, expected `b`"),
            "unknown field `a`, expected `b`"
        );
        let long = "x".repeat(10_000);
        let cut = echoed(&format!("unknown field `{long}`, expected `v`"));
        // "unknown field ", 64 characters of the run, "…", " expected `v`".
        assert_eq!(cut.chars().count(), 14 + 64 + 1 + 13);
        assert!(cut.ends_with("xxx… expected `v`"), "{cut}");
        assert_eq!(echoed("a\nb\u{1b}"), "a\\u{a}b\\u{1b}");
        let words = "ab ".repeat(1000);
        assert_eq!(echoed(&words).chars().count(), 301);
    }
}
