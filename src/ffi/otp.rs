//! FFI for the RFC 4226/6238 primitives, secrets and key URIs.

use std::sync::Arc;

use zeroize::Zeroizing;

use super::{now, FfiResult};
use crate::Algorithm;

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
    pub fn generate_with_length(bytes: u32) -> FfiResult<Arc<Self>> {
        Ok(Self::wrap(crate::Secret::generate_with_len(bytes)?))
    }

    /// The secret as base32 without padding, for an enrolment screen.
    pub fn to_base32(&self) -> String {
        self.inner.to_base32().to_string()
    }

    /// Length of the secret in bytes.
    pub fn byte_length(&self) -> u32 {
        u32::try_from(self.inner.len()).unwrap_or(u32::MAX)
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
        digits: u32,
        algorithm: Option<Algorithm>,
    ) -> FfiResult<Arc<Self>> {
        let algorithm = algorithm.map_or(crate::Algorithm::Sha1, Into::into);
        let inner = crate::Hotp::new(secret.inner.clone(), algorithm, digits)?;
        Ok(Arc::new(Hotp { inner }))
    }

    /// The code for `counter`.
    pub fn generate(&self, counter: u64) -> String {
        self.inner.generate(counter).as_str().to_string()
    }

    /// Checks `code` against counters `counter` to `counter + look_ahead`,
    /// in constant time, and returns the counter that matched or null. Store
    /// the matched counter plus one so the code cannot be used again.
    ///
    /// # Errors
    /// `MalformedCode`, `WindowTooLarge` (more than 100).
    #[uniffi::method(default(look_ahead = 0))]
    pub fn verify(&self, code: String, counter: u64, look_ahead: u64) -> FfiResult<Option<u64>> {
        let code = Zeroizing::new(code);
        self.inner.verify(&code, counter, look_ahead)
    }
}

// ---------------------------------------------------------------------------
// TOTP

/// A successful TOTP verification.
#[derive(Debug, Clone, Copy, PartialEq, Eq, uniffi::Record)]
pub struct TotpMatch {
    /// The time step whose code matched; pass it as `last_used_step` next
    /// time so the same code is not accepted twice.
    pub step: u64,
    /// Matched step minus current step: negative when the authenticator's
    /// clock is behind.
    pub drift: i64,
}

impl From<crate::TotpMatch> for TotpMatch {
    fn from(m: crate::TotpMatch) -> Self {
        TotpMatch {
            step: m.step,
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
    /// A TOTP for `secret`: `digits` digits (6 to 10), a time step of
    /// `period` seconds (at least 1) counted from `t0` (unix seconds), and
    /// the hash `algorithm` (SHA-1 when null).
    ///
    /// # Errors
    /// `InvalidDigits`, `InvalidPeriod`.
    #[uniffi::constructor(default(digits = 6, period = 30, algorithm = None, t0 = 0))]
    pub fn new(
        secret: Arc<Secret>,
        digits: u32,
        period: u64,
        algorithm: Option<Algorithm>,
        t0: u64,
    ) -> FfiResult<Arc<Self>> {
        let config = crate::TotpConfig {
            algorithm: algorithm.map_or(crate::Algorithm::Sha1, Into::into),
            digits,
            period,
            t0,
        };
        let inner = crate::Totp::new(secret.inner.clone(), config)?;
        Ok(Arc::new(Totp { inner }))
    }

    /// The time step at a unix time.
    ///
    /// # Errors
    /// `TimeBeforeStart`.
    pub fn step_at(&self, time: u64) -> FfiResult<u64> {
        self.inner.step_at(time)
    }

    /// The code at a unix time (seconds).
    ///
    /// # Errors
    /// `TimeBeforeStart`.
    pub fn generate(&self, time: u64) -> FfiResult<String> {
        Ok(self.inner.generate(time)?.as_str().to_string())
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
        time: u64,
        behind: u64,
        ahead: u64,
        last_used_step: Option<u64>,
    ) -> FfiResult<Option<TotpMatch>> {
        let code = Zeroizing::new(code);
        let window = crate::Window { behind, ahead };
        Ok(self
            .inner
            .verify(&code, time, window, last_used_step)?
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
        behind: u64,
        ahead: u64,
        last_used_step: Option<u64>,
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
        /// Time step in seconds.
        period: u64,
    },
    /// Counter-based (RFC 4226).
    Hotp {
        /// The counter of the next code.
        counter: u64,
    },
}

impl From<OtpKind> for crate::OtpKind {
    fn from(k: OtpKind) -> Self {
        match k {
            OtpKind::Totp { period } => crate::OtpKind::Totp { period },
            OtpKind::Hotp { counter } => crate::OtpKind::Hotp { counter },
        }
    }
}

impl From<crate::OtpKind> for OtpKind {
    fn from(k: crate::OtpKind) -> Self {
        match k {
            crate::OtpKind::Totp { period } => OtpKind::Totp { period },
            crate::OtpKind::Hotp { counter } => OtpKind::Hotp { counter },
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
    pub digits: u32,
}

impl From<crate::KeyUri> for KeyUri {
    fn from(k: crate::KeyUri) -> Self {
        KeyUri {
            kind: k.kind.into(),
            secret: Secret::wrap(k.secret.clone()),
            issuer: k.issuer.clone(),
            account: k.account.clone(),
            algorithm: k.algorithm.into(),
            digits: k.digits,
        }
    }
}

impl From<&KeyUri> for crate::KeyUri {
    fn from(k: &KeyUri) -> Self {
        crate::KeyUri {
            kind: k.kind.into(),
            secret: k.secret.inner.clone(),
            issuer: k.issuer.clone(),
            account: k.account.clone(),
            algorithm: k.algorithm.into(),
            digits: k.digits,
        }
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
    Ok(crate::KeyUri::from(&key).to_uri()?.to_string())
}

/// The HOTP a key URI describes.
///
/// # Errors
/// `ParameterNotAllowed` for a TOTP key, `InvalidDigits`.
#[uniffi::export]
pub fn key_uri_hotp(key: KeyUri) -> FfiResult<Arc<Hotp>> {
    let inner = crate::KeyUri::from(&key).hotp()?;
    Ok(Arc::new(Hotp { inner }))
}

/// The TOTP a key URI describes (T0 = 0).
///
/// # Errors
/// `ParameterNotAllowed` for an HOTP key, `InvalidDigits`, `InvalidPeriod`.
#[uniffi::export]
pub fn key_uri_totp(key: KeyUri) -> FfiResult<Arc<Totp>> {
    let inner = crate::KeyUri::from(&key).totp()?;
    Ok(Arc::new(Totp { inner }))
}
