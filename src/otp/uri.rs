//! `otpauth://` key URIs, the format of enrolment QR codes.
//!
//! `otpauth://TYPE/LABEL?secret=BASE32&issuer=ISSUER&algorithm=SHA1&digits=6&period=30`
//! with TYPE `totp` or `hotp` (`hotp` needs `counter=N`), and LABEL
//! `issuer:account` or `account`, percent-encoded. Parameters this library
//! does not use (`image`, `color`, ...) are ignored.

use core::fmt;
use std::time::Duration;

use percent_encoding::{percent_decode_str, utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
use zeroize::Zeroizing;

use crate::error::{Error, Result};
use crate::otp::algorithm::Algorithm;
use crate::otp::hotp::{check_digits, Counter, Hotp};
use crate::otp::secret::Secret;
use crate::otp::totp::{Totp, TotpConfig, DEFAULT_DIGITS, DEFAULT_PERIOD};

/// A TOTP period in whole seconds, at least one.
///
/// # Errors
/// [`Error::InvalidPeriod`] for zero or a fraction of a second.
fn whole_period(period: Duration) -> Result<u64> {
    if period.subsec_nanos() != 0 || period.as_secs() == 0 {
        return Err(Error::InvalidPeriod);
    }
    Ok(period.as_secs())
}

/// Characters left as they are in a label or parameter: RFC 3986's unreserved set.
const ENCODE: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// Which kind of key, with the setting only that kind has.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "ffi", derive(uniffi::Enum))]
#[cfg_attr(feature = "ffi", uniffi::export(Debug))]
pub enum OtpKind {
    /// Time-based (RFC 6238).
    Totp {
        /// The time step, in whole seconds, at least one (default 30 s).
        period: Duration,
    },
    /// Counter-based (RFC 4226).
    Hotp {
        /// The counter of the next code.
        counter: Counter,
    },
}

/// The contents of an `otpauth://` key URI.
///
/// `Debug` never shows the secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyUri {
    /// TOTP with its period, or HOTP with its counter.
    pub kind: OtpKind,
    /// The shared secret.
    pub secret: Secret,
    /// Who issued the key ("Acme Deliveries"), shown by authenticator apps.
    pub issuer: Option<String>,
    /// The account the key is for ("courier-4711@acme.example").
    pub account: String,
    /// The hash function.
    pub algorithm: Algorithm,
    /// Digits per code.
    pub digits: u32,
}

impl KeyUri {
    /// A TOTP key URI with the usual settings (SHA-1, 6 digits, 30 s).
    pub fn new_totp(secret: Secret, issuer: Option<String>, account: String) -> Self {
        KeyUri {
            kind: OtpKind::Totp {
                period: Duration::from_secs(DEFAULT_PERIOD),
            },
            secret,
            issuer,
            account,
            algorithm: Algorithm::Sha1,
            digits: DEFAULT_DIGITS,
        }
    }

    /// Reads an `otpauth://` URI.
    ///
    /// The scheme, type and algorithm are read in any case; `+` in a
    /// parameter is a space; a label issuer prefix and an `issuer` parameter
    /// must agree when both are present.
    ///
    /// # Errors
    /// [`Error::UnsupportedScheme`], [`Error::UnknownOtpType`],
    /// [`Error::MissingAccount`], [`Error::MissingSecret`],
    /// [`Error::MissingCounter`], [`Error::InvalidParameter`] (bad
    /// `algorithm`, `digits`, `period` or `counter`),
    /// [`Error::DuplicateParameter`], [`Error::ParameterNotAllowed`]
    /// (`period` on hotp, `counter` on totp), [`Error::IssuerMismatch`],
    /// [`Error::InvalidLabel`] (also for a control or bidirectional-override
    /// character in the issuer or account), [`Error::InvalidPercentEncoding`], and the
    /// base32 errors of [`Secret::from_base32`] for the secret.
    pub fn parse(uri: &str) -> Result<Self> {
        let (scheme, rest) = uri.split_once("://").ok_or(Error::UnsupportedScheme)?;
        if !scheme.eq_ignore_ascii_case("otpauth") {
            return Err(Error::UnsupportedScheme);
        }
        let (path, query) = rest.split_once('?').unwrap_or((rest, ""));
        let (otp_type, raw_label) = path.split_once('/').unwrap_or((path, ""));
        let is_totp = if otp_type.eq_ignore_ascii_case("totp") {
            true
        } else if otp_type.eq_ignore_ascii_case("hotp") {
            false
        } else {
            return Err(Error::UnknownOtpType);
        };

        let (label_issuer, account) = parse_label(raw_label)?;
        let params = Params::parse(query)?;

        let issuer = match (label_issuer, params.issuer) {
            (Some(a), Some(b)) if a != b => return Err(Error::IssuerMismatch),
            (a, b) => a.or(b),
        };
        if issuer.as_deref() == Some("") {
            return Err(Error::InvalidParameter {
                name: "issuer".into(),
                reason: "it is empty".into(),
            });
        }
        // Found by fuzzing: an issuer parameter with ':' read, but could not
        // be written back, as ':' separates issuer and account in the label.
        if issuer.as_deref().is_some_and(|i| i.contains(':')) {
            return Err(Error::InvalidParameter {
                name: "issuer".into(),
                reason: "it contains ':', which separates issuer and account in the label".into(),
            });
        }
        let secret_text = params.secret.ok_or(Error::MissingSecret)?;
        let secret = Secret::from_base32(&secret_text)?;
        let algorithm = match params.algorithm {
            None => Algorithm::Sha1,
            Some(a) => a.parse().map_err(|_| Error::InvalidParameter {
                name: "algorithm".into(),
                reason: "it must be SHA1, SHA256 or SHA512".into(),
            })?,
        };
        let digits = match params.digits {
            None => DEFAULT_DIGITS,
            Some(d) => d
                .parse::<u32>()
                .ok()
                .and_then(|d| check_digits(d).ok())
                .ok_or_else(|| Error::InvalidParameter {
                    name: "digits".into(),
                    reason: "it must be a whole number from 6 to 10".into(),
                })?,
        };
        let kind = if is_totp {
            if params.counter.is_some() {
                return Err(not_allowed("counter", "totp"));
            }
            let period = match params.period {
                None => DEFAULT_PERIOD,
                Some(p) => p.parse::<u64>().ok().filter(|p| *p >= 1).ok_or_else(|| {
                    Error::InvalidParameter {
                        name: "period".into(),
                        reason: "it must be a whole number of seconds, at least 1".into(),
                    }
                })?,
            };
            OtpKind::Totp {
                period: Duration::from_secs(period),
            }
        } else {
            if params.period.is_some() {
                return Err(not_allowed("period", "hotp"));
            }
            let counter = params.counter.ok_or(Error::MissingCounter)?;
            let counter = counter
                .parse::<u64>()
                .map_err(|_| Error::InvalidParameter {
                    name: "counter".into(),
                    reason: "it must be a whole number from 0 to 18446744073709551615".into(),
                })?;
            OtpKind::Hotp {
                counter: Counter(counter),
            }
        };
        let key = KeyUri {
            kind,
            secret,
            issuer,
            account,
            algorithm,
            digits,
        };
        key.check_label_characters()?;
        Ok(key)
    }

    /// Writes the URI: the label `issuer:account` (or `account`), then
    /// `secret` (base32, no padding), `issuer`, `algorithm`, `digits` and
    /// `period` or `counter`, all percent-encoded. [`KeyUri::parse`] of the
    /// result gives this value back. The text holds the secret and is wiped
    /// when dropped.
    ///
    /// # Errors
    /// - [`Error::InvalidLabel`] for an empty account, an account starting
    ///   with a space, an account containing `:` without an issuer, an
    ///   empty issuer or one containing `:`, or a control or bidirectional
    ///   override character in either;
    /// - [`Error::InvalidDigits`] and [`Error::InvalidPeriod`] for settings
    ///   no authenticator could use.
    pub fn to_uri(&self) -> Result<Zeroizing<String>> {
        self.check()?;
        let (otp_type, tail) = match self.kind {
            OtpKind::Totp { period } => ("totp", format!("&period={}", period.as_secs())),
            OtpKind::Hotp { counter } => ("hotp", format!("&counter={counter}")),
        };
        let account = utf8_percent_encode(&self.account, ENCODE);
        let mut uri = Zeroizing::new(String::with_capacity(128));
        uri.push_str("otpauth://");
        uri.push_str(otp_type);
        uri.push('/');
        if let Some(issuer) = &self.issuer {
            uri.push_str(&utf8_percent_encode(issuer, ENCODE).to_string());
            uri.push(':');
        }
        uri.push_str(&account.to_string());
        uri.push_str("?secret=");
        uri.push_str(&self.secret.to_base32());
        if let Some(issuer) = &self.issuer {
            uri.push_str("&issuer=");
            uri.push_str(&utf8_percent_encode(issuer, ENCODE).to_string());
        }
        uri.push_str("&algorithm=");
        uri.push_str(self.algorithm.as_str());
        uri.push_str(&format!("&digits={}", self.digits));
        uri.push_str(&tail);
        Ok(uri)
    }

    /// The HOTP this URI describes.
    ///
    /// # Errors
    /// [`Error::ParameterNotAllowed`] for a TOTP URI; [`Error::InvalidDigits`].
    pub fn hotp(&self) -> Result<Hotp> {
        match self.kind {
            OtpKind::Hotp { .. } => Hotp::new(self.secret.clone(), self.algorithm, self.digits),
            OtpKind::Totp { .. } => Err(not_allowed("counter", "totp")),
        }
    }

    /// The TOTP this URI describes (T0 = 0).
    ///
    /// # Errors
    /// [`Error::ParameterNotAllowed`] for an HOTP URI; [`Error::InvalidDigits`],
    /// [`Error::InvalidPeriod`].
    pub fn totp(&self) -> Result<Totp> {
        match self.kind {
            OtpKind::Totp { period } => Totp::new(
                self.secret.clone(),
                TotpConfig {
                    algorithm: self.algorithm,
                    digits: self.digits,
                    period: whole_period(period)?,
                    t0: 0,
                },
            ),
            OtpKind::Hotp { .. } => Err(not_allowed("period", "hotp")),
        }
    }

    /// Refuses control characters (NUL, newline, ESC) and bidirectional
    /// overrides in the issuer and account, which an authenticator app
    /// would show and a log line would carry.
    fn check_label_characters(&self) -> Result<()> {
        let fields = [
            ("account", Some(&self.account)),
            ("issuer", self.issuer.as_ref()),
        ];
        for (field, text) in fields {
            if text.is_some_and(|t| t.chars().any(crate::delivery::code::is_unsafe_char)) {
                return Err(label_error(
                    field,
                    "it contains a control or bidirectional-override character (NUL, newline, ESC, ...)",
                ));
            }
        }
        Ok(())
    }

    pub(crate) fn check(&self) -> Result<()> {
        check_digits(self.digits)?;
        if let OtpKind::Totp { period } = self.kind {
            whole_period(period)?;
        }
        if self.account.is_empty() {
            return Err(label_error("account", "it is empty"));
        }
        if self.account.starts_with(' ') {
            return Err(label_error("account", "it starts with a space"));
        }
        if self.issuer.is_none() && self.account.contains(':') {
            // It would read back as issuer and account.
            return Err(label_error(
                "account",
                "it contains ':', which without an issuer would read back as one",
            ));
        }
        self.check_label_characters()?;
        if let Some(issuer) = &self.issuer {
            if issuer.is_empty() {
                return Err(label_error("issuer", "it is empty"));
            }
            if issuer.contains(':') {
                return Err(label_error("issuer", "it contains ':'"));
            }
        }
        Ok(())
    }
}

impl fmt::Display for OtpKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            OtpKind::Totp { .. } => f.write_str("totp"),
            OtpKind::Hotp { .. } => f.write_str("hotp"),
        }
    }
}

fn not_allowed(name: &str, otp_type: &str) -> Error {
    Error::ParameterNotAllowed {
        name: name.into(),
        otp_type: otp_type.into(),
    }
}

fn label_error(field: &str, reason: &str) -> Error {
    Error::InvalidLabel {
        field: field.into(),
        reason: reason.into(),
    }
}

/// Splits a raw label at the first literal or encoded colon and decodes both
/// halves. Spaces before the account are dropped, as Google's key URI format
/// allows them.
fn parse_label(raw: &str) -> Result<(Option<String>, String)> {
    let colon = [raw.find(':'), find_ignore_case(raw, "%3A")];
    let split = colon.iter().flatten().min().copied();
    let (issuer, account) = match split {
        None => (None, raw),
        Some(at) => {
            let width = if raw.get(at..).is_some_and(|r| r.starts_with(':')) {
                1
            } else {
                3
            };
            let issuer = raw.get(..at).unwrap_or("");
            let account = raw.get(at.saturating_add(width)..).unwrap_or("");
            (Some(decode(issuer, "label", false)?), account)
        }
    };
    let account = decode(account, "label", false)?;
    let account = account.trim_start_matches(' ').to_string();
    if issuer.as_deref() == Some("") {
        return Err(label_error(
            "issuer",
            "the label has an empty issuer before ':'",
        ));
    }
    if account.is_empty() {
        return Err(Error::MissingAccount);
    }
    Ok((issuer, account))
}

fn find_ignore_case(haystack: &str, needle: &str) -> Option<usize> {
    haystack
        .to_ascii_uppercase()
        .find(&needle.to_ascii_uppercase())
}

/// Percent-decodes to UTF-8; in query values `+` means a space.
fn decode(text: &str, part: &str, plus_is_space: bool) -> Result<String> {
    let spaced;
    let text = if plus_is_space && text.contains('+') {
        spaced = text.replace('+', " ");
        spaced.as_str()
    } else {
        text
    };
    percent_decode_str(text)
        .decode_utf8()
        .map(|s| s.into_owned())
        .map_err(|_| Error::InvalidPercentEncoding { part: part.into() })
}

/// The parameters this library reads, each at most once.
#[derive(Default)]
struct Params {
    secret: Option<Zeroizing<String>>,
    issuer: Option<String>,
    algorithm: Option<String>,
    digits: Option<String>,
    period: Option<String>,
    counter: Option<String>,
}

impl Params {
    fn parse(query: &str) -> Result<Self> {
        let mut params = Params::default();
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            let (raw_name, raw_value) = pair.split_once('=').unwrap_or((pair, ""));
            let name = decode(raw_name, "parameter name", true)?.to_ascii_lowercase();
            let slot = match name.as_str() {
                "secret" => {
                    let value = Zeroizing::new(decode(raw_value, "secret", true)?);
                    if params.secret.replace(value).is_some() {
                        return Err(Error::DuplicateParameter { name });
                    }
                    continue;
                }
                "issuer" => &mut params.issuer,
                "algorithm" => &mut params.algorithm,
                "digits" => &mut params.digits,
                "period" => &mut params.period,
                "counter" => &mut params.counter,
                _ => continue,
            };
            let value = decode(raw_value, &name, true)?;
            if slot.replace(value).is_some() {
                return Err(Error::DuplicateParameter { name });
            }
        }
        Ok(params)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_a_full_totp_uri() {
        let k = KeyUri::parse(
            "otpauth://totp/ACME%20Co:john.doe@email.com?secret=JBSWY3DPEHPK3PXP&issuer=ACME%20Co&algorithm=SHA256&digits=8&period=60",
        )
        .unwrap();
        assert_eq!(
            k.kind,
            OtpKind::Totp {
                period: Duration::from_secs(60)
            }
        );
        assert_eq!(k.issuer.as_deref(), Some("ACME Co"));
        assert_eq!(k.account, "john.doe@email.com");
        assert_eq!(k.algorithm, Algorithm::Sha256);
        assert_eq!(k.digits, 8);
        assert_eq!(k.secret.to_base32().as_str(), "JBSWY3DPEHPK3PXP");
    }

    #[test]
    fn round_trips_awkward_names() {
        let k = KeyUri {
            kind: OtpKind::Hotp {
                counter: Counter(u64::MAX),
            },
            secret: Secret::from_bytes(b"\x00\xffsecret").unwrap(),
            issuer: Some("Zoë & Søn / 100%+?".into()),
            account: "a:b@c d".into(),
            algorithm: Algorithm::Sha512,
            digits: 10,
        };
        let uri = k.to_uri().unwrap();
        assert_eq!(KeyUri::parse(&uri).unwrap(), k);
    }

    #[test]
    fn refuses_what_cannot_be_written() {
        let mut k = KeyUri::new_totp(Secret::from_bytes(b"s").unwrap(), None, "".into());
        assert!(matches!(k.to_uri(), Err(Error::InvalidLabel { .. })));
        k.account = "x".into();
        k.issuer = Some("a:b".into());
        assert!(matches!(k.to_uri(), Err(Error::InvalidLabel { .. })));
        k.issuer = None;
        k.account = "acme:x".into();
        assert!(matches!(k.to_uri(), Err(Error::InvalidLabel { .. })));
        k.account = "x".into();
        k.kind = OtpKind::Totp {
            period: Duration::ZERO,
        };
        assert_eq!(k.to_uri().unwrap_err(), Error::InvalidPeriod);
        k.kind = OtpKind::Totp {
            period: Duration::from_millis(30_500),
        };
        assert_eq!(k.to_uri().unwrap_err(), Error::InvalidPeriod);
        assert_eq!(k.totp().unwrap_err(), Error::InvalidPeriod);
    }

    #[test]
    fn control_and_bidi_characters_in_labels_are_refused_both_ways() {
        for bad in ["%00", "%0A", "%1B%5B31m", "%E2%80%AE", "%7F"] {
            for uri in [
                format!("otpauth://totp/Acme{bad}:c?secret=JBSWY3DPEHPK3PXP"),
                format!("otpauth://totp/Acme:c{bad}?secret=JBSWY3DPEHPK3PXP"),
                format!("otpauth://totp/c?secret=JBSWY3DPEHPK3PXP&issuer=Acme{bad}"),
            ] {
                let e = KeyUri::parse(&uri).unwrap_err();
                assert!(matches!(e, Error::InvalidLabel { .. }), "{uri}: {e:?}");
            }
        }
        for bad in ["\0", "\n", "\u{1b}", "\u{202e}"] {
            let mut k =
                KeyUri::new_totp(Secret::from_bytes(b"s").unwrap(), None, format!("c{bad}"));
            assert!(
                matches!(k.to_uri(), Err(Error::InvalidLabel { .. })),
                "account {bad:?}"
            );
            k.account = "c".into();
            k.issuer = Some(format!("Acme{bad}"));
            assert!(
                matches!(k.to_uri(), Err(Error::InvalidLabel { .. })),
                "issuer {bad:?}"
            );
        }
        // Letters beyond ASCII are fine.
        let k = KeyUri::new_totp(
            Secret::from_bytes(b"s").unwrap(),
            Some("Zoë".into()),
            "ü@x".into(),
        );
        assert!(k.to_uri().is_ok());
    }

    #[test]
    fn an_issuer_parameter_with_a_colon_is_refused_as_it_could_not_be_written_back() {
        // The fuzz target key_uri found this: it parsed, then to_uri failed.
        for uri in [
            "otpauth://totp/john?secret=JBSWY3DPEHPK3PXP&issuer=ACME%3AEU",
            "otpauth://totp/john?secret=JBSWY3DPEHPK3PXP&issuer=ACME:EU",
        ] {
            assert_eq!(
                KeyUri::parse(uri).unwrap_err(),
                Error::InvalidParameter {
                    name: "issuer".into(),
                    reason: "it contains ':', which separates issuer and account in the label"
                        .into()
                }
            );
        }
    }
}
