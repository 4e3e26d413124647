//! FFI for the RFC 4226/6238 primitives, secrets and key URIs.

use std::sync::Arc;

use zeroize::Zeroizing;

use std::time::Duration;

use super::{now, unsigned, whole_secs, FfiResult};
use crate::error::count;
use crate::Algorithm;
use crate::{Counter, TotpMatch, UnixTime};

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
    pub fn generate(&self, counter: Counter) -> String {
        self.inner.generate(counter.0).as_str().to_string()
    }

    /// Checks `code` against counters `counter` to `counter + look_ahead`,
    /// in constant time, and returns the counter that matched or null. Store
    /// the matched counter plus one so the code cannot be used again.
    ///
    /// # Errors
    /// `MalformedCode`, `WindowTooLarge` (more than 100).
    #[uniffi::method(default(look_ahead = 0))]
    pub fn verify(
        &self,
        code: String,
        counter: Counter,
        look_ahead: i32,
    ) -> FfiResult<Option<Counter>> {
        let code = Zeroizing::new(code);
        let look_ahead = unsigned(look_ahead, "look_ahead")?;
        Ok(self
            .inner
            .verify(&code, counter.0, look_ahead)?
            .map(Counter))
    }
}

// ---------------------------------------------------------------------------
// TOTP

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
    pub fn step_at(&self, time: UnixTime) -> FfiResult<Counter> {
        Ok(Counter(self.inner.step_at(time.secs())?))
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
            Some(step) => Some(Counter(unsigned(step, "last_used_step")?)),
            None => None,
        };
        self.inner
            .verify(&code, time.secs(), window, last_used_step)
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

/// The contents of an `otpauth://` key URI (an enrolment QR code). Equal
/// when every field is (the secrets compared in constant time); its printed
/// form leaves the secret out.
#[derive(uniffi::Object)]
#[uniffi::export(Debug, Eq, Hash)]
pub struct KeyUri {
    inner: crate::KeyUri,
}

debug_as_inner!(KeyUri);

impl PartialEq for KeyUri {
    fn eq(&self, other: &Self) -> bool {
        self.inner == other.inner
    }
}

impl Eq for KeyUri {}

/// Every field but the secret, of which only its length: nothing derived
/// from the secret's bytes goes into a hash table.
impl std::hash::Hash for KeyUri {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        let k = &self.inner;
        (k.kind, &k.issuer, &k.account, k.algorithm, k.digits).hash(state);
        k.secret.len().hash(state);
    }
}

#[uniffi::export]
impl KeyUri {
    /// A key URI for `secret`: TOTP with its period or HOTP with its counter,
    /// shown by authenticator apps as `issuer` (may be null) and `account`,
    /// with the hash `algorithm` (SHA-1 when null) and `digits` digits.
    ///
    /// # Errors
    /// `InvalidLabel` for an account or issuer no URI can carry (empty, a
    /// `:` without an issuer, control or bidirectional-override characters),
    /// `InvalidDigits`, `InvalidPeriod` (zero or a fraction of a second).
    #[uniffi::constructor(default(issuer = None, algorithm = None, digits = 6))]
    pub fn new(
        kind: crate::OtpKind,
        secret: Arc<Secret>,
        account: String,
        issuer: Option<String>,
        algorithm: Option<Algorithm>,
        digits: i32,
    ) -> FfiResult<Arc<Self>> {
        let inner = crate::KeyUri {
            kind,
            secret: secret.inner.clone(),
            issuer,
            account,
            algorithm: algorithm.unwrap_or_default(),
            digits: unsigned(digits, "digits")?,
        };
        inner.check()?;
        Ok(Arc::new(KeyUri { inner }))
    }

    /// Reads an `otpauth://totp/...` or `otpauth://hotp/...` URI.
    ///
    /// # Errors
    /// `UnsupportedScheme`, `UnknownOtpType`, `MissingAccount`, `MissingSecret`,
    /// `MissingCounter`, `InvalidParameter`, `DuplicateParameter`,
    /// `ParameterNotAllowed`, `IssuerMismatch`, `InvalidLabel`,
    /// `InvalidPercentEncoding`, and the base32 errors for the secret.
    #[uniffi::constructor]
    pub fn parse(uri: String) -> FfiResult<Arc<Self>> {
        let uri = Zeroizing::new(uri);
        Ok(Arc::new(KeyUri {
            inner: crate::KeyUri::parse(&uri)?,
        }))
    }

    /// The `otpauth://` URI (it holds the secret); `parse` of it gives this
    /// key back.
    ///
    /// # Errors
    /// None for a key made by `new` or `parse`; the same as `new` otherwise.
    pub fn to_uri(&self) -> FfiResult<String> {
        Ok(self.inner.to_uri()?.to_string())
    }

    /// TOTP with its period, or HOTP with its counter.
    pub fn kind(&self) -> crate::OtpKind {
        self.inner.kind
    }

    /// The shared secret.
    pub fn secret(&self) -> Arc<Secret> {
        Secret::wrap(self.inner.secret.clone())
    }

    /// Who issued the key, shown by authenticator apps.
    pub fn issuer(&self) -> Option<String> {
        self.inner.issuer.clone()
    }

    /// The account the key is for.
    pub fn account(&self) -> String {
        self.inner.account.clone()
    }

    /// The hash function.
    pub fn algorithm(&self) -> Algorithm {
        self.inner.algorithm
    }

    /// Digits per code.
    pub fn digits(&self) -> i32 {
        count(self.inner.digits)
    }

    /// The HOTP this key describes.
    ///
    /// # Errors
    /// `ParameterNotAllowed` for a TOTP key.
    pub fn hotp(&self) -> FfiResult<Arc<Hotp>> {
        let inner = self.inner.hotp()?;
        Ok(Arc::new(Hotp { inner }))
    }

    /// The TOTP this key describes (T0 = 0).
    ///
    /// # Errors
    /// `ParameterNotAllowed` for an HOTP key.
    pub fn totp(&self) -> FfiResult<Arc<Totp>> {
        let inner = self.inner.totp()?;
        Ok(Arc::new(Totp { inner }))
    }
}
