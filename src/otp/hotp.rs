//! HOTP, RFC 4226: an HMAC-based one-time password from a counter.

use core::fmt;

use hmac::digest::KeyInit;
use hmac::{Hmac, Mac};
use subtle::{ConditionallySelectable, ConstantTimeEq};
use zeroize::Zeroizing;

pub use crate::delivery::code::Code;
use crate::error::{Error, Result};
use crate::otp::algorithm::Algorithm;
use crate::otp::secret::Secret;

/// Fewest digits a code may have (RFC 4226 section 5.3: "at least a 6-digit value").
pub const MIN_DIGITS: u32 = 6;
/// Most digits a code may have. RFC 4226 truncates to 31 bits, so a 10-digit
/// code is that number, zero-padded; more digits would add nothing.
pub const MAX_DIGITS: u32 = 10;
/// The widest verification window, on each side, that the library checks.
/// RFC 4226 section 7.4 warns that an attacker's chance grows with it.
pub const MAX_WINDOW: u64 = 100;

/// An RFC 4226 counter (its "moving factor", eight unsigned bytes): an HOTP
/// key's counter, or the TOTP time step (RFC 6238's T) that stands in for one.
///
/// With the `ffi` feature Kotlin sees it as `Long` and Swift as `Int64`
/// carrying the same 64 bits: a counter past `Long.MAX_VALUE` is negative
/// there (Java's convention; `java.lang.Long.toUnsignedString` prints it),
/// and every value round-trips unchanged.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Counter(pub u64);

impl From<u64> for Counter {
    fn from(n: u64) -> Self {
        Counter(n)
    }
}

impl From<Counter> for u64 {
    fn from(c: Counter) -> Self {
        c.0
    }
}

impl fmt::Display for Counter {
    /// The unsigned number.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

#[cfg(feature = "ffi")]
uniffi::custom_type!(Counter, i64, {
    lower: |c| i64::from_be_bytes(c.0.to_be_bytes()),
    try_lift: |bits| Ok(Counter(u64::from_be_bytes(bits.to_be_bytes()))),
});

/// Checks that `digits` is within [`MIN_DIGITS`]..=[`MAX_DIGITS`].
pub(crate) fn check_digits(digits: u32) -> Result<u32> {
    if (MIN_DIGITS..=MAX_DIGITS).contains(&digits) {
        Ok(digits)
    } else {
        Err(Error::InvalidDigits {
            digits: i64::from(digits),
            min: i64::from(MIN_DIGITS),
            max: i64::from(MAX_DIGITS),
        })
    }
}

/// An HOTP generator and verifier for one secret (RFC 4226).
///
/// The HMAC key is set up once, when the `Hotp` is made, and each code
/// clones that state: half the SHA-1 or SHA-256 work of setting the key up
/// for every code. `Debug` shows the settings but never the secret.
#[derive(Clone)]
pub struct Hotp {
    secret: Secret,
    algorithm: Algorithm,
    digits: u32,
    keyed: KeyedHmac,
}

impl PartialEq for Hotp {
    fn eq(&self, other: &Self) -> bool {
        // `keyed` follows from the secret and the algorithm.
        self.secret == other.secret
            && self.algorithm == other.algorithm
            && self.digits == other.digits
    }
}

impl Eq for Hotp {}

/// The HMAC state of the secret, for the algorithm chosen; it wipes itself
/// on drop (the `zeroize` features of `hmac`, `sha1` and `sha2`).
#[derive(Clone)]
enum KeyedHmac {
    Sha1(Hmac<sha1::Sha1>),
    Sha256(Hmac<sha2::Sha256>),
    Sha512(Hmac<sha2::Sha512>),
}

impl KeyedHmac {
    fn new(secret: &Secret, algorithm: Algorithm) -> Result<Self> {
        let key = secret.expose_bytes();
        // HMAC takes keys of any length (RFC 2104 section 2), so the error
        // arm does not happen.
        let refused = |_| Error::InvalidKey {
            reason: "HMAC refused the key".into(),
        };
        Ok(match algorithm {
            Algorithm::Sha1 => KeyedHmac::Sha1(KeyInit::new_from_slice(key).map_err(refused)?),
            Algorithm::Sha256 => KeyedHmac::Sha256(KeyInit::new_from_slice(key).map_err(refused)?),
            Algorithm::Sha512 => KeyedHmac::Sha512(KeyInit::new_from_slice(key).map_err(refused)?),
        })
    }

    /// HMAC of the 8-byte big-endian counter, then dynamic truncation (RFC
    /// 4226 sections 5.2 and 5.3): a 31-bit number.
    fn truncated_value(&self, counter: u64) -> u32 {
        let message = counter.to_be_bytes();
        match self {
            KeyedHmac::Sha1(mac) => truncate_mac(mac.clone(), &message),
            KeyedHmac::Sha256(mac) => truncate_mac(mac.clone(), &message),
            KeyedHmac::Sha512(mac) => truncate_mac(mac.clone(), &message),
        }
    }
}

impl fmt::Debug for Hotp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Hotp")
            .field("secret", &self.secret)
            .field("algorithm", &self.algorithm)
            .field("digits", &self.digits)
            .finish()
    }
}

impl Hotp {
    /// An HOTP with the given hash and number of digits.
    ///
    /// # Errors
    /// [`Error::InvalidDigits`] unless `digits` is 6 to 10.
    pub fn new(secret: Secret, algorithm: Algorithm, digits: u32) -> Result<Self> {
        let digits = check_digits(digits)?;
        let keyed = KeyedHmac::new(&secret, algorithm)?;
        Ok(Hotp {
            secret,
            algorithm,
            digits,
            keyed,
        })
    }

    /// The hash function.
    pub fn algorithm(&self) -> Algorithm {
        self.algorithm
    }

    /// The number of digits of each code.
    pub fn digits(&self) -> u32 {
        self.digits
    }

    /// The secret.
    pub fn secret(&self) -> &Secret {
        &self.secret
    }

    /// The code for `counter` (RFC 4226 section 5.3).
    pub fn generate(&self, counter: u64) -> Code {
        let value = self.keyed.truncated_value(counter);
        Code::new(format_code(value, self.digits))
    }

    /// Checks an entered code against counters `counter` to
    /// `counter + look_ahead` (RFC 4226 section 7.4) and returns the counter
    /// that matched, or `None`.
    ///
    /// After a match the server must store the matched counter plus one, so
    /// the same code is never accepted twice. Every counter in the window is
    /// computed and compared in constant time, so timing does not tell which
    /// one matched. The window stops at `u64::MAX` instead of wrapping.
    ///
    /// # Errors
    /// - [`Error::MalformedCode`] unless `code` is `digits` decimal digits
    ///   (spaces between them are ignored);
    /// - [`Error::WindowTooLarge`] when `look_ahead` exceeds [`MAX_WINDOW`].
    pub fn verify(&self, code: &str, counter: u64, look_ahead: u64) -> Result<Option<u64>> {
        check_window(look_ahead)?;
        let last = counter.saturating_add(look_ahead);
        self.verify_range(code, counter, last)
    }

    /// Compares `code` with the codes of every counter in `first..=last`, in
    /// constant time, and returns the matching counter.
    pub(crate) fn verify_range(&self, code: &str, first: u64, last: u64) -> Result<Option<u64>> {
        let entered = check_entered(code, self.digits)?;
        // Compared as numbers: `entered` is exactly `digits` ASCII digits,
        // so its value below 10^digits stands for it one to one, and no code
        // text is formatted per candidate.
        let entered = Zeroizing::new(entered.bytes().fold(0u64, |acc, b| {
            acc.wrapping_mul(10)
                .wrapping_add(u64::from(b.wrapping_sub(b'0')))
        }));
        let modulus = 10u64.checked_pow(self.digits).unwrap_or(u64::MAX);
        let mut found = subtle::Choice::from(0);
        let mut matched = 0u64;
        for candidate in first..=last {
            let expected = Zeroizing::new(
                u64::from(self.keyed.truncated_value(candidate))
                    .checked_rem(modulus)
                    .unwrap_or(0),
            );
            let hit = expected.ct_eq(&entered);
            matched.conditional_assign(&candidate, hit);
            found |= hit;
        }
        Ok(if bool::from(found) {
            Some(matched)
        } else {
            None
        })
    }
}

/// Checks a window size against [`MAX_WINDOW`].
pub(crate) fn check_window(size: u64) -> Result<()> {
    if size > MAX_WINDOW {
        return Err(Error::WindowTooLarge {
            requested: crate::error::int(size),
            max: crate::error::int(MAX_WINDOW),
        });
    }
    Ok(())
}

/// Removes spaces from an entered code and checks that what is left is
/// exactly `digits` ASCII digits. The copy is wiped when dropped.
pub(crate) fn check_entered(code: &str, digits: u32) -> Result<Zeroizing<String>> {
    let entered: Zeroizing<String> = Zeroizing::new(code.chars().filter(|c| *c != ' ').collect());
    let right_length = u32::try_from(entered.len()).is_ok_and(|len| len == digits);
    if !right_length || !entered.bytes().all(|b| b.is_ascii_digit()) {
        return Err(Error::MalformedCode {
            expected_digits: i64::from(digits),
        });
    }
    Ok(entered)
}

fn truncate_mac<M: Mac>(mut mac: M, message: &[u8]) -> u32 {
    mac.update(message);
    // `CtOutput` wipes the digest when dropped.
    dynamic_truncation(mac.finalize().as_bytes())
}

/// RFC 4226 section 5.3 "DT": the low four bits of the last byte pick an
/// offset; the four bytes there, top bit cleared, are the value.
fn dynamic_truncation(digest: &[u8]) -> u32 {
    let offset = usize::from(digest.last().copied().unwrap_or(0) & 0x0f);
    let mut word = [0u8; 4];
    for (dst, src) in word.iter_mut().zip(digest.iter().skip(offset)) {
        *dst = *src;
    }
    u32::from_be_bytes(word) & 0x7fff_ffff
}

/// The value modulo 10^digits, zero-padded to `digits` (RFC 4226 section 5.3
/// step 3, extended past 8 digits exactly as pyotp and oathtool do).
fn format_code(value: u32, digits: u32) -> String {
    let modulus = 10u64.checked_pow(digits).unwrap_or(u64::MAX);
    let reduced = u64::from(value).checked_rem(modulus).unwrap_or(0);
    format!("{reduced:0width$}", width = digits as usize)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rfc4226() -> Hotp {
        Hotp::new(
            Secret::from_bytes(b"12345678901234567890").unwrap(),
            Algorithm::Sha1,
            6,
        )
        .unwrap()
    }

    #[test]
    fn first_rfc_vector() {
        assert_eq!(rfc4226().generate(0).as_str(), "755224");
    }

    #[test]
    fn truncation_matches_the_rfc_example() {
        // RFC 4226 section 5.4.
        let digest = [
            0x1f, 0x86, 0x98, 0x69, 0x0e, 0x02, 0xca, 0x16, 0x61, 0x85, 0x50, 0xef, 0x7f, 0x19,
            0xda, 0x8e, 0x94, 0x5b, 0x55, 0x5a,
        ];
        assert_eq!(dynamic_truncation(&digest), 0x50ef7f19);
        assert_eq!(format_code(0x50ef7f19, 6), "872921");
    }

    #[test]
    fn ten_digits_is_the_zero_padded_31_bit_value() {
        assert_eq!(format_code(1_284_755_224, 10), "1284755224");
        assert_eq!(format_code(82_162_583, 10), "0082162583");
    }

    #[test]
    fn digits_outside_six_to_ten_are_refused() {
        let s = Secret::from_bytes(b"k").unwrap();
        for d in [0, 5, 11, u32::MAX] {
            assert_eq!(
                Hotp::new(s.clone(), Algorithm::Sha1, d).unwrap_err(),
                Error::InvalidDigits {
                    digits: i64::from(d),
                    min: 6,
                    max: 10
                }
            );
        }
    }

    #[test]
    fn verify_returns_the_matching_counter_within_the_window() {
        let h = rfc4226();
        assert_eq!(h.verify("969429", 0, 5).unwrap(), Some(3));
        assert_eq!(h.verify("969 429", 3, 0).unwrap(), Some(3));
        assert_eq!(h.verify("969429", 0, 2).unwrap(), None);
        assert_eq!(h.verify("969429", 4, 10).unwrap(), None);
    }

    #[test]
    fn verify_window_stops_at_u64_max() {
        let h = rfc4226();
        let code = h.generate(u64::MAX);
        assert_eq!(
            h.verify(code.as_str(), u64::MAX - 1, 100).unwrap(),
            Some(u64::MAX)
        );
        assert_eq!(
            h.verify(code.as_str(), u64::MAX, 0).unwrap(),
            Some(u64::MAX)
        );
    }

    #[test]
    fn verify_refuses_malformed_codes_and_huge_windows() {
        let h = rfc4226();
        for bad in ["", "75522", "7552244", "75522a", "７55224", "-755224"] {
            assert_eq!(
                h.verify(bad, 0, 0).unwrap_err(),
                Error::MalformedCode { expected_digits: 6 },
                "{bad:?}"
            );
        }
        assert_eq!(
            h.verify("755224", 0, 101).unwrap_err(),
            Error::WindowTooLarge {
                requested: 101,
                max: 100
            }
        );
    }

    #[test]
    fn debug_hides_secret_and_code() {
        let h = rfc4226();
        let shown = format!("{h:?} {:?}", h.generate(0));
        assert!(!shown.contains("755224"));
        assert!(!shown.contains("1234567890"));
        assert!(shown.contains("[redacted]"));
    }
}
