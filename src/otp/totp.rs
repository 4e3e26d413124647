//! TOTP, RFC 6238: HOTP with the counter taken from the clock.

use crate::error::{Error, Result};
use crate::otp::algorithm::Algorithm;
use crate::otp::hotp::{check_entered, check_window, Code, Counter, Hotp};
use crate::otp::secret::Secret;

/// The usual time step, in seconds (RFC 6238 section 5.2).
pub const DEFAULT_PERIOD: u64 = 30;
/// The usual number of digits.
pub const DEFAULT_DIGITS: u32 = 6;

/// The settings of a TOTP key besides the secret.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TotpConfig {
    /// The hash function (default SHA-1).
    pub algorithm: Algorithm,
    /// Digits per code, 6 to 10 (default 6).
    pub digits: u32,
    /// Time step X in seconds, at least 1 (default 30).
    pub period: u64,
    /// Start time T0, unix seconds (default 0).
    pub t0: u64,
}

impl Default for TotpConfig {
    fn default() -> Self {
        TotpConfig {
            algorithm: Algorithm::Sha1,
            digits: DEFAULT_DIGITS,
            period: DEFAULT_PERIOD,
            t0: 0,
        }
    }
}

/// How many time steps around the current one a verification accepts, to
/// allow for clock drift and typing time (RFC 6238 section 5.2 recommends at
/// most one step back).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Window {
    /// Steps before the current one.
    pub behind: u64,
    /// Steps after the current one.
    pub ahead: u64,
}

impl Window {
    /// One step behind and none ahead: what RFC 6238 section 5.2 recommends.
    pub const RECOMMENDED: Window = Window {
        behind: 1,
        ahead: 0,
    };
}

/// A successful TOTP verification.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "ffi", derive(uniffi::Record))]
#[cfg_attr(feature = "ffi", uniffi::export(Debug))]
pub struct TotpMatch {
    /// The time step whose code matched. Store it and pass it as
    /// `last_used_step` next time, so the same code is never accepted twice.
    pub step: Counter,
    /// The matched step minus the current step: negative when the
    /// authenticator's clock is behind the server's.
    pub drift: i64,
}

/// A TOTP generator and verifier for one secret (RFC 6238).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Totp {
    hotp: Hotp,
    period: u64,
    t0: u64,
}

impl Totp {
    /// A TOTP with the given settings.
    ///
    /// # Errors
    /// - [`Error::InvalidDigits`] unless `config.digits` is 6 to 10;
    /// - [`Error::InvalidPeriod`] when `config.period` is 0.
    pub fn new(secret: Secret, config: TotpConfig) -> Result<Self> {
        if config.period == 0 {
            return Err(Error::InvalidPeriod);
        }
        Ok(Totp {
            hotp: Hotp::new(secret, config.algorithm, config.digits)?,
            period: config.period,
            t0: config.t0,
        })
    }

    /// The settings besides the secret.
    pub fn config(&self) -> TotpConfig {
        TotpConfig {
            algorithm: self.hotp.algorithm(),
            digits: self.hotp.digits(),
            period: self.period,
            t0: self.t0,
        }
    }

    /// The secret.
    pub fn secret(&self) -> &Secret {
        self.hotp.secret()
    }

    /// The time step T = floor((time - T0) / X) for a unix time
    /// (RFC 6238 section 4.2). Works for any `u64` time, past 2^32 too.
    ///
    /// # Errors
    /// [`Error::TimeBeforeStart`] when `time` is before T0.
    pub fn step_at(&self, time: u64) -> Result<u64> {
        let elapsed = time.checked_sub(self.t0).ok_or(Error::TimeBeforeStart {
            time: crate::error::int(time),
            t0: crate::error::int(self.t0),
        })?;
        // period is at least 1 (checked in `new`), so this cannot fail.
        Ok(elapsed.checked_div(self.period).unwrap_or(0))
    }

    /// The code at a unix time.
    ///
    /// # Errors
    /// [`Error::TimeBeforeStart`] when `time` is before T0.
    pub fn generate(&self, time: u64) -> Result<Code> {
        Ok(self.hotp.generate(self.step_at(time)?))
    }

    /// The code of a given time step.
    pub fn generate_for_step(&self, step: u64) -> Code {
        self.hotp.generate(step)
    }

    /// Checks an entered code at a unix time, accepting the steps of
    /// `window` around the current one, and returns the step that matched.
    ///
    /// With `last_used_step`, steps at or before it are not accepted: pass the
    /// step of the last successful login so a code can be used only once
    /// (RFC 6238 section 5.2). Every step in the window is computed and
    /// compared in constant time. The window is clipped at step 0 and at
    /// `u64::MAX`; nothing wraps.
    ///
    /// # Errors
    /// - [`Error::MalformedCode`] unless `code` is the right number of decimal
    ///   digits (spaces between them are ignored);
    /// - [`Error::WindowTooLarge`] when either side exceeds
    ///   [`MAX_WINDOW`](crate::otp::hotp::MAX_WINDOW);
    /// - [`Error::TimeBeforeStart`] when `time` is before T0.
    pub fn verify(
        &self,
        code: &str,
        time: u64,
        window: Window,
        last_used_step: Option<Counter>,
    ) -> Result<Option<TotpMatch>> {
        check_window(window.behind)?;
        check_window(window.ahead)?;
        let now = self.step_at(time)?;
        let earliest = now.saturating_sub(window.behind);
        let last = now.saturating_add(window.ahead);
        // The first step not yet used; none when `last_used_step` is the last step there is.
        let first = match last_used_step {
            None => Some(earliest),
            Some(Counter(used)) => used.checked_add(1).map(|next| next.max(earliest)),
        };
        let Some(first) = first.filter(|first| *first <= last) else {
            // Every step in the window was used already. Still validate the
            // entered text so a malformed one gets its error.
            check_entered(code, self.hotp.digits())?;
            return Ok(None);
        };
        Ok(self
            .hotp
            .verify_range(code, first, last)?
            .map(|step| TotpMatch {
                step: Counter(step),
                drift: signed_difference(step, now),
            }))
    }
}

/// `a - b` as a signed number; both lie within a window of at most
/// 2 * MAX_WINDOW steps, so it always fits.
fn signed_difference(a: u64, b: u64) -> i64 {
    if a >= b {
        i64::try_from(a.abs_diff(b)).unwrap_or(i64::MAX)
    } else {
        i64::try_from(a.abs_diff(b))
            .ok()
            .and_then(i64::checked_neg)
            .unwrap_or(i64::MIN)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rfc6238_sha1() -> Totp {
        Totp::new(
            Secret::from_bytes(b"12345678901234567890").unwrap(),
            TotpConfig {
                digits: 8,
                ..TotpConfig::default()
            },
        )
        .unwrap()
    }

    #[test]
    fn rfc_vector_at_59_seconds() {
        assert_eq!(rfc6238_sha1().generate(59).unwrap().as_str(), "94287082");
    }

    #[test]
    fn period_zero_is_refused() {
        let s = Secret::from_bytes(b"k").unwrap();
        let config = TotpConfig {
            period: 0,
            ..TotpConfig::default()
        };
        assert_eq!(Totp::new(s, config).unwrap_err(), Error::InvalidPeriod);
    }

    #[test]
    fn steps_with_t0_and_extreme_times() {
        let s = Secret::from_bytes(b"k").unwrap();
        let t = Totp::new(
            s,
            TotpConfig {
                period: 1,
                t0: 100,
                ..TotpConfig::default()
            },
        )
        .unwrap();
        assert_eq!(t.step_at(100).unwrap(), 0);
        assert_eq!(t.step_at(u64::MAX).unwrap(), u64::MAX - 100);
        assert_eq!(
            t.step_at(99).unwrap_err(),
            Error::TimeBeforeStart { time: 99, t0: 100 }
        );
        let big = Totp::new(
            Secret::from_bytes(b"k").unwrap(),
            TotpConfig {
                period: u64::MAX,
                ..TotpConfig::default()
            },
        )
        .unwrap();
        assert_eq!(big.step_at(u64::MAX).unwrap(), 1);
        assert_eq!(big.step_at(u64::MAX - 1).unwrap(), 0);
    }

    #[test]
    fn verify_reports_step_and_drift() {
        let t = rfc6238_sha1();
        let code = t.generate(1_111_111_109).unwrap(); // step 0x23523EC
        let window = Window {
            behind: 1,
            ahead: 1,
        };
        let m = t
            .verify(code.as_str(), 1_111_111_109 + 30, window, None)
            .unwrap()
            .unwrap();
        assert_eq!(m.step, Counter(0x23523EC));
        assert_eq!(m.drift, -1);
        let m = t
            .verify(code.as_str(), 1_111_111_109 - 30, window, None)
            .unwrap()
            .unwrap();
        assert_eq!(m.drift, 1);
        assert_eq!(
            t.verify(code.as_str(), 1_111_111_109 + 60, window, None)
                .unwrap(),
            None
        );
    }

    #[test]
    fn a_used_step_is_not_accepted_again() {
        let t = rfc6238_sha1();
        let code = t.generate(59).unwrap();
        let first = t
            .verify(code.as_str(), 59, Window::RECOMMENDED, None)
            .unwrap()
            .unwrap();
        assert_eq!(
            t.verify(code.as_str(), 60, Window::RECOMMENDED, Some(first.step))
                .unwrap(),
            None
        );
        assert_eq!(
            t.verify("1234567", 60, Window::RECOMMENDED, Some(Counter(u64::MAX)))
                .unwrap_err(),
            Error::MalformedCode { expected_digits: 8 }
        );
    }

    #[test]
    fn window_is_clipped_at_step_zero_and_u64_max() {
        let t = Totp::new(
            Secret::from_bytes(b"12345678901234567890").unwrap(),
            TotpConfig {
                period: 1,
                ..TotpConfig::default()
            },
        )
        .unwrap();
        let w = Window {
            behind: 100,
            ahead: 100,
        };
        let c0 = t.generate(0).unwrap();
        assert_eq!(
            t.verify(c0.as_str(), 0, w, None).unwrap().unwrap().step,
            Counter(0)
        );
        let cmax = t.generate(u64::MAX).unwrap();
        let m = t.verify(cmax.as_str(), u64::MAX, w, None).unwrap().unwrap();
        assert_eq!((m.step, m.drift), (Counter(u64::MAX), 0));
        assert_eq!(
            t.verify(cmax.as_str(), u64::MAX, w, Some(Counter(u64::MAX)))
                .unwrap(),
            None
        );
    }
}
