//! FFI for the RFC 4226/6238 primitives, secrets and key URIs.

use std::sync::Arc;

use zeroize::Zeroizing;

use std::time::Duration;

use super::{counter_bits, counter_long, now, unsigned, whole_secs, FfiResult};
use crate::error::{count, int};
use crate::Algorithm;
use crate::UnixTime;

debug_as_inner!(Secret, Hotp, Totp);

// ---------------------------------------------------------------------------
// Secret

/// A shared secret. Its bytes stay in Rust memory and are wiped when the
/// object is closed or collected; `toString()` / `description` show
/// `Secret([redacted])`; equality is constant-time, and the hash code
/// depends only on the length, so it says nothing about the bytes.
#[derive(PartialEq, Eq, uniffi::Object)]
#[uniffi::export(Debug, Eq, Hash)]
pub struct Secret {
    inner: crate::Secret,
}

// Equal secrets have equal lengths, so this keeps the hash contract
// without putting anything derived from the bytes in a hash table.
impl std::hash::Hash for Secret {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.inner.len().hash(state);
    }
}

#[uniffi::export]
impl Secret {
    /// Reads RFC 4648 base32: either case, optional `=` padding, spaces and
    /// dashes ignored.
    ///
    /// # Errors
    /// `InvalidBase32Character` (with its position), `InvalidBase32Length`,
    /// `EmptySecret`.
    #[uniffi::constructor]
    pub fn from_base32(text: String) -> FfiResult<Arc<Self>> {
        let text = Zeroizing::new(text);
        Ok(Self::wrap(crate::Secret::from_base32(&text)?))
    }

    /// Takes raw key bytes (any non-empty length; short legacy secrets
    /// still work).
    ///
    /// # Errors
    /// `EmptySecret` for no bytes.
    #[uniffi::constructor]
    pub fn from_bytes(bytes: Vec<u8>) -> FfiResult<Arc<Self>> {
        let bytes = Zeroizing::new(bytes);
        Ok(Self::wrap(crate::Secret::from_bytes(&bytes)?))
    }

    /// A new 160-bit secret from the operating system's random generator.
    ///
    /// # Errors
    /// `RandomUnavailable` if the generator fails.
    #[uniffi::constructor]
    pub fn generate() -> FfiResult<Arc<Self>> {
        Ok(Self::wrap(crate::Secret::generate()?))
    }

    /// A new secret of `bytes` bytes (16 to 128) from the OS generator.
    ///
    /// # Errors
    /// `SecretTooShort`, `SecretTooLong`, `RandomUnavailable`.
    #[uniffi::constructor]
    pub fn generate_with_length(bytes: i32) -> FfiResult<Arc<Self>> {
        let bytes = unsigned(bytes, "bytes")?;
        Ok(Self::wrap(crate::Secret::generate_with_len(bytes)?))
    }

    /// The secret as base32 without padding, for an enrolment screen.
    pub fn to_base32(&self) -> String {
        self.inner.to_base32().to_string()
    }

    /// Length of the secret in bytes.
    pub fn byte_length(&self) -> i32 {
        count(self.inner.len())
    }
}

impl Secret {
    fn wrap(inner: crate::Secret) -> Arc<Self> {
        Arc::new(Secret { inner })
    }
}

// ---------------------------------------------------------------------------
// HOTP

/// An RFC 4226 HOTP generator and verifier.
#[derive(uniffi::Object)]
#[uniffi::export(Debug)]
pub struct Hotp {
    inner: crate::Hotp,
}

#[uniffi::export]
impl Hotp {
    /// An HOTP for `secret` with `digits` digits (6 to 10) and the hash
    /// `algorithm` (SHA-1 when null).
    ///
    /// # Errors
    /// `InvalidDigits`.
    #[uniffi::constructor(default(digits = 6, algorithm = None))]
    pub fn new(
        secret: Arc<Secret>,
        digits: i32,
        algorithm: Option<Algorithm>,
    ) -> FfiResult<Arc<Self>> {
        let algorithm = algorithm.unwrap_or_default();
        let digits = unsigned(digits, "digits")?;
        let inner = crate::Hotp::new(secret.inner.clone(), algorithm, digits)?;
        Ok(Arc::new(Hotp { inner }))
    }

    /// The code for `counter`: RFC 4226's unsigned 8-byte counter, whose
    /// 64 bits the signed integer carries (past `Long.MAX_VALUE` / `Int64.max`
    /// it reads as negative, as Java's `Long.toUnsignedString` shows).
    pub fn generate(&self, counter: i64) -> String {
        self.inner
            .generate(counter_bits(counter))
            .as_str()
            .to_string()
    }

    /// Checks `code` against counters `counter` to `counter + look_ahead`,
    /// in constant time, and returns the counter that matched or null. Store
    /// the matched counter plus one so the code cannot be used again.
    ///
    /// # Errors
    /// `MalformedCode`, `WindowTooLarge` (more than 100).
    #[uniffi::method(default(look_ahead = 0))]
    pub fn verify(&self, code: String, counter: i64, look_ahead: i32) -> FfiResult<Option<i64>> {
        let code = Zeroizing::new(code);
        let look_ahead = unsigned(look_ahead, "look_ahead")?;
        Ok(self
            .inner
            .verify(&code, counter_bits(counter), look_ahead)?
            .map(counter_long))
    }
}

// ---------------------------------------------------------------------------
// TOTP

/// A successful TOTP verification.
#[derive(Debug, Clone, Copy, PartialEq, Eq, uniffi::Record)]
pub struct TotpMatch {
    /// The time step whose code matched; pass it as `last_used_step` next
    /// time so the same code is not accepted twice.
    pub step: i64,
    /// Matched step minus current step: negative when the authenticator's
    /// clock is behind.
    pub drift: i64,
}

impl From<crate::TotpMatch> for TotpMatch {
    fn from(m: crate::TotpMatch) -> Self {
        TotpMatch {
            step: int(m.step),
            drift: m.drift,
        }
    }
}

/// An RFC 6238 TOTP generator and verifier.
#[derive(uniffi::Object)]
#[uniffi::export(Debug)]
pub struct Totp {
    inner: crate::Totp,
}

#[uniffi::export]
impl Totp {
    /// A TOTP for `secret` as authenticator apps use it: `digits` digits
    /// (6 to 10), 30-second steps from 1970, the hash `algorithm` (SHA-1
    /// when null).
    ///
    /// # Errors
    /// `InvalidDigits`.
    #[uniffi::constructor(default(digits = 6, algorithm = None))]
    pub fn new(
        secret: Arc<Secret>,
        digits: i32,
        algorithm: Option<Algorithm>,
    ) -> FfiResult<Arc<Self>> {
        Self::with_period(
            secret,
            digits,
            Duration::from_secs(30),
            algorithm,
            UnixTime::EPOCH,
        )
    }

    /// A TOTP with its own time step: `period` (whole seconds, at least 1)
    /// counted from `t0`.
    ///
    /// # Errors
    /// `InvalidDigits`, `InvalidPeriod`, `InvalidNumber` for a fraction of a second.
    #[uniffi::constructor]
    pub fn with_period(
        secret: Arc<Secret>,
        digits: i32,
        period: Duration,
        algorithm: Option<Algorithm>,
        t0: UnixTime,
    ) -> FfiResult<Arc<Self>> {
        let config = crate::TotpConfig {
            algorithm: algorithm.unwrap_or_default(),
            digits: unsigned(digits, "digits")?,
            period: whole_secs(period, "period")?,
            t0: t0.secs(),
        };
        let inner = crate::Totp::new(secret.inner.clone(), config)?;
        Ok(Arc::new(Totp { inner }))
    }

    /// The time step at `time`.
    ///
    /// # Errors
    /// `TimeBeforeStart`.
    pub fn step_at(&self, time: UnixTime) -> FfiResult<i64> {
        Ok(int(self.inner.step_at(time.secs())?))
    }

    /// The code at `time`.
    ///
    /// # Errors
    /// `TimeBeforeStart`.
    pub fn generate(&self, time: UnixTime) -> FfiResult<String> {
        Ok(self.inner.generate(time.secs())?.as_str().to_string())
    }

    /// The code now, by this device's clock.
    ///
    /// # Errors
    /// `TimeBeforeStart`.
    pub fn generate_now(&self) -> FfiResult<String> {
        self.generate(now())
    }

    /// Checks `code` at a unix time, accepting `behind` steps before and
    /// `ahead` steps after the current one, but none at or before
    /// `last_used_step`. Returns the match or null; constant time.
    ///
    /// # Errors
    /// `MalformedCode`, `WindowTooLarge` (more than 100 on a side),
    /// `TimeBeforeStart`.
    #[uniffi::method(default(behind = 1, ahead = 0, last_used_step = None))]
    pub fn verify(
        &self,
        code: String,
        time: UnixTime,
        behind: i32,
        ahead: i32,
        last_used_step: Option<i64>,
    ) -> FfiResult<Option<TotpMatch>> {
        let code = Zeroizing::new(code);
        let window = crate::Window {
            behind: unsigned(behind, "behind")?,
            ahead: unsigned(ahead, "ahead")?,
        };
        let last_used_step = match last_used_step {
            Some(step) => Some(unsigned(step, "last_used_step")?),
            None => None,
        };
        Ok(self
            .inner
            .verify(&code, time.secs(), window, last_used_step)?
            .map(Into::into))
    }

    /// [`Totp::verify`] at the current time by this device's clock.
    ///
    /// # Errors
    /// As for `verify`.
    #[uniffi::method(default(behind = 1, ahead = 0, last_used_step = None))]
    pub fn verify_now(
        &self,
        code: String,
        behind: i32,
        ahead: i32,
        last_used_step: Option<i64>,
    ) -> FfiResult<Option<TotpMatch>> {
        self.verify(code, now(), behind, ahead, last_used_step)
    }
}

// ---------------------------------------------------------------------------
// Key URIs

/// TOTP with its period, or HOTP with its counter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, uniffi::Enum)]
#[uniffi::export(Debug)]
pub enum OtpKind {
    /// Time-based (RFC 6238).
    Totp {
        /// The time step (whole seconds).
        period: Duration,
    },
    /// Counter-based (RFC 4226).
    Hotp {
        /// The counter of the next code, its 64 bits as `Hotp.generate` reads them.
        counter: i64,
    },
}

impl OtpKind {
    /// The core's kind; a period with a fraction of a second is refused.
    fn core(self) -> FfiResult<crate::OtpKind> {
        Ok(match self {
            OtpKind::Totp { period } => crate::OtpKind::Totp {
                period: whole_secs(period, "period")?,
            },
            OtpKind::Hotp { counter } => crate::OtpKind::Hotp {
                counter: counter_bits(counter),
            },
        })
    }
}

impl From<crate::OtpKind> for OtpKind {
    fn from(k: crate::OtpKind) -> Self {
        match k {
            crate::OtpKind::Totp { period } => OtpKind::Totp {
                period: Duration::from_secs(period),
            },
            crate::OtpKind::Hotp { counter } => OtpKind::Hotp {
                counter: counter_long(counter),
            },
        }
    }
}

/// The contents of an `otpauth://` key URI (an enrolment QR code).
/// Equal when every field is (the secrets compared in constant time).
#[derive(Debug, Clone, PartialEq, Eq, Hash, uniffi::Record)]
#[uniffi::export(Debug, Eq, Hash)]
pub struct KeyUri {
    /// TOTP with its period, or HOTP with its counter.
    pub kind: OtpKind,
    /// The shared secret.
    pub secret: Arc<Secret>,
    /// Who issued the key, shown by authenticator apps.
    pub issuer: Option<String>,
    /// The account the key is for.
    pub account: String,
    /// The hash function.
    pub algorithm: Algorithm,
    /// Digits per code.
    pub digits: i32,
}

impl From<crate::KeyUri> for KeyUri {
    fn from(k: crate::KeyUri) -> Self {
        KeyUri {
            kind: k.kind.into(),
            secret: Secret::wrap(k.secret.clone()),
            issuer: k.issuer.clone(),
            account: k.account.clone(),
            algorithm: k.algorithm,
            digits: count(k.digits),
        }
    }
}

impl KeyUri {
    /// The core's key URI; negative digits and fractions of a second are refused.
    fn core(&self) -> FfiResult<crate::KeyUri> {
        Ok(crate::KeyUri {
            kind: self.kind.core()?,
            secret: self.secret.inner.clone(),
            issuer: self.issuer.clone(),
            account: self.account.clone(),
            algorithm: self.algorithm,
            digits: unsigned(self.digits, "digits")?,
        })
    }
}

/// Reads an `otpauth://totp/...` or `otpauth://hotp/...` URI.
///
/// # Errors
/// `UnsupportedScheme`, `UnknownOtpType`, `MissingAccount`, `MissingSecret`,
/// `MissingCounter`, `InvalidParameter`, `DuplicateParameter`,
/// `ParameterNotAllowed`, `IssuerMismatch`, `InvalidLabel`,
/// `InvalidPercentEncoding`, and the base32 errors for the secret.
#[uniffi::export]
pub fn parse_key_uri(uri: String) -> FfiResult<KeyUri> {
    let uri = Zeroizing::new(uri);
    Ok(crate::KeyUri::parse(&uri)?.into())
}

/// Writes a key as an `otpauth://` URI; parsing it gives the same key back.
///
/// # Errors
/// `InvalidLabel`, `InvalidDigits`, `InvalidPeriod`.
#[uniffi::export]
pub fn format_key_uri(key: KeyUri) -> FfiResult<String> {
    Ok(key.core()?.to_uri()?.to_string())
}

/// The HOTP a key URI describes.
///
/// # Errors
/// `ParameterNotAllowed` for a TOTP key, `InvalidDigits`.
#[uniffi::export]
pub fn key_uri_hotp(key: KeyUri) -> FfiResult<Arc<Hotp>> {
    let inner = key.core()?.hotp()?;
    Ok(Arc::new(Hotp { inner }))
}

/// The TOTP a key URI describes (T0 = 0).
///
/// # Errors
/// `ParameterNotAllowed` for an HOTP key, `InvalidDigits`, `InvalidPeriod`.
#[uniffi::export]
pub fn key_uri_totp(key: KeyUri) -> FfiResult<Arc<Totp>> {
    let inner = key.core()?.totp()?;
    Ok(Arc::new(Totp { inner }))
}
