//! Code formats and the settings of a delivery code, with the rules that keep
//! an offline ticket from revealing its code.
//!
//! A ticket carries a `t`-bit keyed hash of the code. A wrong code passes the
//! offline check with probability 2^-t; someone who tries every code against
//! the ticket is left with about `space / 2^t` candidates, where `space` is
//! 10^digits (numeric) or 32^length (Crockford base32). The library refuses
//! settings that leave fewer than [`MIN_CANDIDATES`].
//!
//! # Why 100 candidates
//!
//! Whoever holds a ticket can list its candidates offline and pick one. The
//! pick is right with probability 1/candidates, and the backend's online
//! check ends the code at the first wrong candidate (it matches the ticket's
//! hash, which an honest typo does only once in 2^t), so a ticket holder gets
//! exactly one pick per sequence, online or offline. A wrong pick is flagged
//! (`guessed_from_ticket` online, `code_mismatch` at reconciliation). At
//! least 100 candidates keeps a ticket holder's chance at or below 1 in 100
//! per delivery, with 99 of 100 tries flagged; the default (6 digits,
//! t = 12) leaves 244.

use core::fmt;
use core::str::FromStr;
use std::time::Duration;

use crate::error::{Error, Result};

/// Fewest candidates a brute-forcer of a ticket may be left with.
pub const MIN_CANDIDATES: u128 = 100;
/// Narrowest offline hash, in bits: a wrong code then passes 1 time in 256.
pub const MIN_HASH_BITS: u32 = 8;
/// Widest offline hash, in bits.
pub const MAX_HASH_BITS: u32 = 32;
/// Most attempts a code may allow (NIST SP 800-63B allows at most 100 failures).
pub const MAX_ATTEMPTS: u32 = 100;
/// Longest lifetime of a code: 30 days.
pub const MAX_LIFETIME_SECS: u64 = 30 * 24 * 3600;
/// Crockford's base32 alphabet: digits and letters without I, L, O and U.
pub const CROCKFORD_ALPHABET: &[u8; 32] = b"0123456789ABCDEFGHJKMNPQRSTVWXYZ";

/// How a delivery code is written.
///
/// The sizes are `i32` so Kotlin, Swift and Java read them as plain integers;
/// [`CodeFormat::check`] refuses any size out of range, negative ones included.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "ffi", derive(uniffi::Enum))]
#[cfg_attr(feature = "ffi", uniffi::export(Debug))]
pub enum CodeFormat {
    /// Decimal digits, 4 to 10 (fewer than 6 only with `allow_short_codes`).
    Numeric {
        /// Number of digits.
        digits: i32,
    },
    /// Crockford base32 characters (`0-9`, `A-Z` without I, L, O, U), 4 to
    /// 12: five bits each.
    Crockford {
        /// Number of characters.
        length: i32,
    },
}

impl Default for CodeFormat {
    fn default() -> Self {
        CodeFormat::Numeric { digits: 6 }
    }
}

impl CodeFormat {
    /// Characters in a code (0 for a negative size, which [`CodeFormat::check`] refuses).
    pub fn length(self) -> u32 {
        let n = match self {
            CodeFormat::Numeric { digits } => digits,
            CodeFormat::Crockford { length } => length,
        };
        u32::try_from(n).unwrap_or(0)
    }

    /// How many different codes there are (10^digits or 32^length), or
    /// `None` for a format that is out of range.
    pub fn space(self) -> Option<u128> {
        match self {
            CodeFormat::Numeric { digits } if (4..=10).contains(&digits) => {
                10u128.checked_pow(self.length())
            }
            CodeFormat::Crockford { length } if (4..=12).contains(&length) => {
                32u128.checked_pow(self.length())
            }
            _ => None,
        }
    }

    /// Whether the format has fewer than 6 digits, which needs an explicit opt-in.
    pub fn is_short(self) -> bool {
        matches!(self, CodeFormat::Numeric { digits } if digits < 6)
    }

    /// Checks the range, and that short numeric codes were opted into.
    ///
    /// # Errors
    /// [`Error::InvalidCodeFormat`].
    pub fn check(self, allow_short_codes: bool) -> Result<()> {
        if self.space().is_none() {
            return Err(Error::InvalidCodeFormat {
                reason: match self {
                    CodeFormat::Numeric { digits } => {
                        format!("a numeric code has 4 to 10 digits, not {digits}")
                    }
                    CodeFormat::Crockford { length } => {
                        format!("a Crockford base32 code has 4 to 12 characters, not {length}")
                    }
                },
            });
        }
        if self.is_short() && !allow_short_codes {
            return Err(Error::InvalidCodeFormat {
                reason: format!(
                    "{self} codes are shorter than 6 digits; allow short codes explicitly to use them"
                ),
            });
        }
        Ok(())
    }
}

/// A format's wire form (`numeric-6`) on the stack, for the keyed hashes
/// that cover it: issuing takes it twice, and an allocation each time cost
/// more than the rest of the text's work.
pub(crate) struct FormatTag {
    bytes: [u8; 24],
    len: usize,
}

impl FormatTag {
    /// The tag's bytes.
    pub(crate) fn as_bytes(&self) -> &[u8] {
        self.bytes.get(..self.len).unwrap_or_default()
    }
}

impl CodeFormat {
    /// The wire form, as [`fmt::Display`] writes it, without an allocation.
    pub(crate) fn tag(self) -> FormatTag {
        let (name, n): (&[u8], i32) = match self {
            CodeFormat::Numeric { digits } => (b"numeric-", digits),
            CodeFormat::Crockford { length } => (b"crockford-", length),
        };
        let mut tag = FormatTag {
            bytes: [0u8; 24],
            len: 0,
        };
        let mut put = |byte: u8| {
            if let Some(slot) = tag.bytes.get_mut(tag.len) {
                *slot = byte;
                tag.len = tag.len.saturating_add(1);
            }
        };
        name.iter().for_each(|b| put(*b));
        if n < 0 {
            put(b'-');
        }
        crate::decimal::Decimal::new(u64::from(n.unsigned_abs()))
            .as_bytes()
            .iter()
            .for_each(|d| put(*d));
        tag
    }
}

impl fmt::Display for CodeFormat {
    /// The wire form: `numeric-6` or `crockford-8`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CodeFormat::Numeric { digits } => write!(f, "numeric-{digits}"),
            CodeFormat::Crockford { length } => write!(f, "crockford-{length}"),
        }
    }
}

impl FromStr for CodeFormat {
    type Err = Error;

    /// Reads `numeric-N` or `crockford-N` (ranges are checked by [`CodeFormat::check`]).
    ///
    /// # Errors
    /// [`Error::InvalidCodeFormat`] for any other text.
    fn from_str(text: &str) -> Result<Self> {
        let bad = || Error::InvalidCodeFormat {
            reason: "the format must be numeric-N or crockford-N".into(),
        };
        let (kind, n) = text.split_once('-').ok_or_else(bad)?;
        if n.is_empty() || n.len() > 2 || !n.bytes().all(|b| b.is_ascii_digit()) {
            return Err(bad());
        }
        let n: i32 = n.parse().map_err(|_| bad())?;
        match kind {
            "numeric" => Ok(CodeFormat::Numeric { digits: n }),
            "crockford" => Ok(CodeFormat::Crockford { length: n }),
            _ => Err(bad()),
        }
    }
}

/// What the backend decides for one delivery's code. Its JSON form names
/// the format as text (`"numeric-6"`) and the lifetime in seconds
/// (`"lifetime_secs"`), as rules files and the CLI write them; reading it
/// does not check the settings (issuing does, see [`Self::check`]).
///
/// A wrong code passes the offline check with probability 2^-`hash_bits`;
/// someone who tries every code against the ticket is left with about
/// (code space) / 2^`hash_bits` candidates, which must be at least 100.
/// Counts are `i32` so Kotlin, Swift and Java read them as plain integers;
/// [`Self::check`] refuses negative ones.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[cfg_attr(feature = "ffi", derive(uniffi::Record))]
#[serde(deny_unknown_fields)]
pub struct DeliverySettings {
    /// How the code is written (default: 6 digits).
    #[serde(with = "format_text")]
    pub format: CodeFormat,
    /// Opt-in for numeric codes of 4 or 5 digits (default: false).
    #[cfg_attr(feature = "ffi", uniffi(default = false))]
    pub allow_short_codes: bool,
    /// Width t of the offline hash in bits, 8 to 32 (default 12: a wrong code
    /// passes 1 time in 4096).
    #[cfg_attr(feature = "ffi", uniffi(default = 12))]
    pub hash_bits: i32,
    /// Attempts before the code locks, 1 to 100 (default 5).
    #[cfg_attr(feature = "ffi", uniffi(default = 5))]
    pub max_attempts: i32,
    /// From issuing until the code expires: whole seconds, up to 30 days
    /// (default one day).
    #[serde(rename = "lifetime_secs", with = "whole_seconds")]
    pub lifetime: Duration,
}

impl Default for DeliverySettings {
    fn default() -> Self {
        DeliverySettings {
            format: CodeFormat::Numeric { digits: 6 },
            allow_short_codes: false,
            hash_bits: 12,
            max_attempts: 5,
            lifetime: Duration::from_secs(24 * 3600),
        }
    }
}

impl DeliverySettings {
    /// Checks every rule.
    ///
    /// # Errors
    /// - [`Error::InvalidCodeFormat`] for a format out of range or a short one
    ///   without the opt-in;
    /// - [`Error::UnsafeSettings`] for a hash width outside 8 to 32 bits, a
    ///   width that leaves a brute-forcer fewer than 100 candidates, no
    ///   attempts or more than 100, or a lifetime of 0 or over 30 days;
    /// - [`Error::InvalidNumber`] for a lifetime with a fraction of a second.
    pub fn check(&self) -> Result<()> {
        self.format.check(self.allow_short_codes)?;
        check_hash_bits(self.format, self.hash_bits)?;
        check_attempts(self.max_attempts)?;
        let secs = crate::time::whole_secs(self.lifetime, "lifetime")?;
        if secs == 0 || secs > MAX_LIFETIME_SECS {
            return Err(Error::UnsafeSettings {
                reason: format!(
                    "a code lives from 1 second to {MAX_LIFETIME_SECS} seconds (30 days), not {secs}"
                ),
            });
        }
        Ok(())
    }

    /// The hash width as the ticket keeps it (0 for a negative one, which
    /// [`Self::check`] refuses).
    pub(crate) fn hash_width(&self) -> u32 {
        u32::try_from(self.hash_bits).unwrap_or(0)
    }

    /// The attempts as the ticket keeps them (0 for a negative count, which
    /// [`Self::check`] refuses).
    pub(crate) fn attempts(&self) -> u32 {
        u32::try_from(self.max_attempts).unwrap_or(0)
    }

    /// The lifetime in whole seconds, as the ticket keeps it.
    pub fn lifetime_secs(&self) -> u64 {
        self.lifetime.as_secs()
    }

    /// The chance that one wrong code passes the offline check: 2^-t.
    pub fn false_accept_probability(&self) -> f64 {
        false_accept_probability(self.hash_width())
    }

    /// About how many codes match a ticket's hash: space / 2^t.
    pub fn expected_candidates(&self) -> f64 {
        expected_candidates(self.format, self.hash_width())
    }
}

/// 2^-t.
pub fn false_accept_probability(hash_bits: u32) -> f64 {
    0.5f64.powi(i32::try_from(hash_bits).unwrap_or(i32::MAX))
}

/// space / 2^t (0 for a format out of range).
pub fn expected_candidates(format: CodeFormat, hash_bits: u32) -> f64 {
    let space = format.space().unwrap_or(0) as f64;
    space * false_accept_probability(hash_bits)
}

/// The hash-width rules, shared by issuing and by reading a ticket.
/// Takes any integer (settings hold `i32`, tickets and rules `u32`), so a
/// negative width is reported as given.
pub(crate) fn check_hash_bits(format: CodeFormat, hash_bits: impl Into<i64>) -> Result<()> {
    let given = hash_bits.into();
    let hash_bits = match u32::try_from(given) {
        Ok(bits) if (MIN_HASH_BITS..=MAX_HASH_BITS).contains(&bits) => bits,
        _ => {
            return Err(Error::UnsafeSettings {
                reason: format!(
                    "the offline hash is {MIN_HASH_BITS} to {MAX_HASH_BITS} bits wide, not {given}"
                ),
            })
        }
    };
    let space = format.space().unwrap_or(0);
    let candidates = space.checked_shr(hash_bits).unwrap_or(0);
    if candidates < MIN_CANDIDATES {
        return Err(Error::UnsafeSettings {
            reason: format!(
                "with {format} codes a {hash_bits}-bit hash leaves about {candidates} candidates \
                 to someone who tries every code against the ticket, who then guesses right once in \
                 {candidates}; at least {MIN_CANDIDATES} are needed (use fewer bits or a longer code)"
            ),
        });
    }
    Ok(())
}

/// Takes any integer, as [`check_hash_bits`] does.
pub(crate) fn check_attempts(max_attempts: impl Into<i64>) -> Result<()> {
    let max_attempts = max_attempts.into();
    if max_attempts < 1 || max_attempts > i64::from(MAX_ATTEMPTS) {
        return Err(Error::UnsafeSettings {
            reason: format!("a code allows 1 to {MAX_ATTEMPTS} attempts, not {max_attempts}"),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_stack_tag_is_the_display_form_for_every_number() {
        for n in [
            i32::MIN,
            -10,
            -1,
            0,
            1,
            4,
            6,
            9,
            10,
            12,
            99,
            100,
            12345,
            i32::MAX,
        ] {
            for format in [
                CodeFormat::Numeric { digits: n },
                CodeFormat::Crockford { length: n },
            ] {
                assert_eq!(format.tag().as_bytes(), format.to_string().as_bytes());
            }
        }
    }

    #[test]
    fn default_is_six_digits_t12_five_attempts_and_passes() {
        let s = DeliverySettings::default();
        assert_eq!(s.format, CodeFormat::Numeric { digits: 6 });
        assert_eq!((s.hash_bits, s.max_attempts), (12, 5));
        s.check().unwrap();
        assert!((s.expected_candidates() - 244.14).abs() < 0.01);
        assert!((s.false_accept_probability() - 1.0 / 4096.0).abs() < 1e-12);
    }

    #[test]
    fn refuses_hashes_that_give_the_code_away() {
        let mut s = DeliverySettings {
            hash_bits: 13, // 10^6 / 2^13 = 122 candidates: allowed
            ..DeliverySettings::default()
        };
        s.check().unwrap();
        // 61 candidates: a ticket holder would guess right once in 61.
        s.hash_bits = 14;
        let err = s.check().unwrap_err();
        assert_eq!(err.kind(), "unsafe_settings");
        assert!(err.to_string().contains("about 61 candidates"), "{err}");
        s.hash_bits = 15; // what issue 11 confirmed 10 of 10 deliveries with
        assert_eq!(s.check().unwrap_err().kind(), "unsafe_settings");
        s.hash_bits = 7;
        assert_eq!(s.check().unwrap_err().kind(), "unsafe_settings");
        s.hash_bits = 33;
        assert_eq!(s.check().unwrap_err().kind(), "unsafe_settings");
    }

    #[test]
    fn short_codes_need_the_opt_in() {
        let mut s = DeliverySettings {
            format: CodeFormat::Numeric { digits: 4 },
            hash_bits: 8,
            ..DeliverySettings::default()
        };
        assert_eq!(s.check().unwrap_err().kind(), "invalid_code_format");
        s.allow_short_codes = true;
        // 10^4 / 2^8 = 39 candidates: too few for an offline ticket.
        assert_eq!(s.check().unwrap_err().kind(), "unsafe_settings");
        s.format = CodeFormat::Numeric { digits: 5 };
        s.check().unwrap(); // 10^5 / 2^8 = 390 candidates
        s.format = CodeFormat::Numeric { digits: 3 };
        assert_eq!(s.check().unwrap_err().kind(), "invalid_code_format");
    }

    #[test]
    fn attempts_and_lifetime_are_bounded() {
        for (attempts, lifetime) in [
            (0, 60),
            (-1, 60),
            (101, 60),
            (5, 0),
            (5, MAX_LIFETIME_SECS + 1),
        ] {
            let s = DeliverySettings {
                max_attempts: attempts,
                lifetime: Duration::from_secs(lifetime),
                ..DeliverySettings::default()
            };
            assert_eq!(s.check().unwrap_err().kind(), "unsafe_settings");
        }
        let fraction = DeliverySettings {
            lifetime: Duration::from_millis(90_500),
            ..DeliverySettings::default()
        };
        assert_eq!(fraction.check().unwrap_err().kind(), "invalid_number");
        let negative_width = DeliverySettings {
            hash_bits: -12,
            ..DeliverySettings::default()
        };
        assert_eq!(
            negative_width.check().unwrap_err().to_string(),
            "unsafe settings: the offline hash is 8 to 32 bits wide, not -12"
        );
        assert_eq!(
            serde_json::to_string(&DeliverySettings::default()).unwrap(),
            r#"{"format":"numeric-6","allow_short_codes":false,"hash_bits":12,"max_attempts":5,"lifetime_secs":86400}"#
        );
    }

    #[test]
    fn formats_have_a_wire_form() {
        for f in [
            CodeFormat::Numeric { digits: 6 },
            CodeFormat::Crockford { length: 12 },
        ] {
            assert_eq!(f.to_string().parse::<CodeFormat>().unwrap(), f);
        }
        for bad in [
            "numeric",
            "numeric-",
            "numeric-x",
            "hex-6",
            "numeric-+6",
            "numeric-006",
        ] {
            assert!(bad.parse::<CodeFormat>().is_err(), "{bad}");
        }
        assert_eq!(CodeFormat::Crockford { length: 12 }.space(), Some(1 << 60));
        assert_eq!(CodeFormat::Crockford { length: 13 }.space(), None);
    }
}

/// A [`Duration`] in JSON as its whole seconds (a fraction is kept out by
/// [`DeliverySettings::check`] before anything is issued).
mod whole_seconds {
    use serde::{Deserialize, Deserializer, Serializer};
    use std::time::Duration;

    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(d.as_secs())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        u64::deserialize(d).map(Duration::from_secs)
    }
}

/// [`CodeFormat`] in JSON as its wire text (settings, tickets, receipts).
pub(crate) mod format_text {
    use super::CodeFormat;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(format: &CodeFormat, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(format)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<CodeFormat, D::Error> {
        let text = String::deserialize(d)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}
