//! Delivery codes: derived from a master key, a delivery id and a sequence
//! number, uniform over their space; typed input normalized before checking.

use core::fmt;

use unicode_properties::{GeneralCategory, UnicodeGeneralCategory};
use zeroize::{Zeroize, ZeroizeOnDrop, Zeroizing};

use crate::delivery::keys::MasterKey;
use crate::delivery::settings::{CodeFormat, CROCKFORD_ALPHABET};
use crate::error::{Error, Result};

/// Domain of the code derivation.
const CODE_DOMAIN: &[u8] = b"delivery-otp/v1/code";
/// Longest delivery id, in bytes.
pub const MAX_DELIVERY_ID_BYTES: usize = 128;

/// A one-time code: the digits or characters to show or read out.
///
/// Wiped from memory on drop; `Debug` prints `Code([redacted])`.
#[derive(Clone, PartialEq, Eq, Zeroize, ZeroizeOnDrop)]
pub struct Code(String);

impl Code {
    pub(crate) fn new(text: String) -> Self {
        Code(text)
    }

    /// The code, without separators.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The code in groups for reading aloud: `482 913`, `4829 1357`,
    /// `482 913 571`; a group of one is never left at the end.
    pub fn grouped(&self) -> String {
        group(&self.0)
    }
}

impl fmt::Debug for Code {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Code([redacted])")
    }
}

/// Groups of three, except that 4 and 8 characters are split in fours and a
/// last group of one joins the group before it.
pub(crate) fn group(code: &str) -> String {
    let chars: Vec<char> = code.chars().collect();
    let sizes: Vec<usize> = match chars.len() {
        0..=5 => vec![chars.len()],
        8 => vec![4, 4],
        n => {
            let mut sizes = vec![3; n / 3];
            match n % 3 {
                0 => {}
                1 => {
                    if let Some(last) = sizes.last_mut() {
                        *last = 4;
                    }
                }
                _ => sizes.push(2),
            }
            sizes
        }
    };
    let mut out = String::with_capacity(chars.len().saturating_mul(2));
    let mut rest = chars.as_slice();
    for size in sizes {
        let (head, tail) = rest.split_at(size.min(rest.len()));
        if !out.is_empty() {
            out.push(' ');
        }
        out.extend(head);
        rest = tail;
    }
    out
}

/// Checks a delivery id: 1 to 128 bytes of text, no control characters, no
/// spaces at either end.
///
/// # Errors
/// [`Error::InvalidDeliveryId`].
pub fn check_delivery_id(delivery_id: &str) -> Result<()> {
    let reason = if delivery_id.is_empty() {
        "it is empty"
    } else if delivery_id.len() > MAX_DELIVERY_ID_BYTES {
        "it is longer than 128 bytes"
    } else if delivery_id.chars().any(is_unsafe_char) {
        "it contains a control or bidirectional formatting character"
    } else if delivery_id.trim() != delivery_id {
        "it starts or ends with a space"
    } else {
        return Ok(());
    };
    Err(Error::InvalidDeliveryId {
        reason: reason.into(),
    })
}

/// Characters refused in every id and note a person reads: control
/// characters, and the bidirectional formatting characters (U+061C, U+200E,
/// U+200F, U+202A to U+202E, U+2066 to U+2069) that can make text read in
/// another order than it is stored.
pub(crate) fn is_unsafe_char(c: char) -> bool {
    c.is_control()
        || matches!(
            c,
            '\u{061C}' | '\u{200E}' | '\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}'
        )
}

/// The largest sequence, 2^63 - 1: what Kotlin's `Long`, Swift's `Int64` and
/// PostgreSQL's `bigint` hold, so every language and store reads every
/// sequence the same.
pub const MAX_SEQUENCE: u64 = 9_223_372_036_854_775_807;

/// Refuses a sequence past [`MAX_SEQUENCE`].
pub(crate) fn check_sequence(sequence: u64) -> Result<()> {
    if sequence > MAX_SEQUENCE {
        return Err(Error::InvalidNumber {
            what: "sequence".into(),
            reason: format!("a sequence is 0 to {MAX_SEQUENCE}"),
        });
    }
    Ok(())
}

/// The code for a delivery: `HMAC-SHA256(key, domain, delivery id, sequence,
/// format)`, its first 128 bits reduced modulo the code space. The bias of
/// that reduction is below 2^-60 even for 12 Crockford characters, and zero
/// for Crockford codes (a power of two). Another delivery, sequence, format
/// or key gives an independent code.
///
/// # Errors
/// [`Error::InvalidDeliveryId`], [`Error::InvalidCodeFormat`] (short codes
/// are allowed here: the opt-in is checked where settings are).
pub fn derive_code(
    key: &MasterKey,
    delivery_id: &str,
    sequence: u64,
    format: CodeFormat,
) -> Result<Code> {
    check_delivery_id(delivery_id)?;
    check_sequence(sequence)?;
    format.check(true)?;
    let space = format.space().unwrap_or(1);
    let format_tag = format.tag();
    let mac = key.mac().sign(
        CODE_DOMAIN,
        &[
            delivery_id.as_bytes(),
            &sequence.to_be_bytes(),
            format_tag.as_bytes(),
        ],
    );
    let mut wide = [0u8; 16];
    for (dst, src) in wide.iter_mut().zip(mac.iter()) {
        *dst = *src;
    }
    let mut value = u128::from_be_bytes(wide).checked_rem(space).unwrap_or(0);
    wide.zeroize();
    let length = format.length() as usize;
    let text = match format {
        // Below 10^10 (at most 10 digits): a u64, whose digits are written
        // from the last, padded with zeros.
        CodeFormat::Numeric { .. } => {
            let mut small = u64::try_from(value).unwrap_or(0);
            let mut digits = vec![b'0'; length];
            for slot in digits.iter_mut().rev() {
                // `small % 10` is below 10.
                *slot = b'0'.saturating_add(u8::try_from(small % 10).unwrap_or(0));
                small /= 10;
            }
            small.zeroize();
            String::from_utf8(digits).unwrap_or_default()
        }
        CodeFormat::Crockford { .. } => {
            let mut chars = vec![b'0'; length];
            for slot in chars.iter_mut().rev() {
                let index = usize::try_from(value & 31).unwrap_or(0);
                *slot = CROCKFORD_ALPHABET.get(index).copied().unwrap_or(b'0');
                value >>= 5;
            }
            String::from_utf8(chars).unwrap_or_default()
        }
    };
    value.zeroize();
    Ok(Code::new(text))
}

/// Normalizes what a person typed into the form the code is written in.
///
/// - Separators are dropped: white space of any kind and dashes (`-`, `‐`,
///   `–`, `—`, `−`, full-width `－`, ...).
/// - Decimal digits of any script become ASCII: full-width `０-９`,
///   Arabic-Indic `٠-٩`, Devanagari `०-९`, and every other Unicode `Nd`
///   digit.
/// - For Crockford codes, full-width letters become ASCII, lower case becomes
///   upper case, `O` reads as `0`, and `I` and `L` read as `1`.
///
/// Anything else is an error, never dropped or guessed.
///
/// # Errors
/// - [`Error::InvalidCodeCharacter`] with the position (counting characters
///   from 1) of the first character that is none of the above;
/// - [`Error::WrongCodeLength`] when the count left is not the format's.
pub fn normalize(entered: &str, format: CodeFormat) -> Result<Zeroizing<String>> {
    let mut out = Zeroizing::new(String::with_capacity(16));
    let mut found: u64 = 0;
    for (index, c) in entered.chars().enumerate() {
        let position = (index as u64).saturating_add(1);
        if is_separator(c) {
            continue;
        }
        let c = fold_full_width(c);
        let normalized = match (decimal_value(c), format) {
            (Some(digit), _) => char::from(b'0'.saturating_add(digit)),
            (None, CodeFormat::Crockford { .. }) => match c.to_ascii_uppercase() {
                'O' => '0',
                'I' | 'L' => '1',
                upper if upper.is_ascii() && CROCKFORD_ALPHABET.contains(&(upper as u8)) => upper,
                _ => {
                    return Err(Error::InvalidCodeCharacter {
                        position: crate::error::int(position),
                    })
                }
            },
            (None, CodeFormat::Numeric { .. }) => {
                return Err(Error::InvalidCodeCharacter {
                    position: crate::error::int(position),
                })
            }
        };
        found = found.saturating_add(1);
        // Keep at most one character more than a code, to report the length.
        if out.len() <= format.length() as usize {
            out.push(normalized);
        }
    }
    if found != u64::from(format.length()) {
        return Err(Error::WrongCodeLength {
            expected: i64::from(format.length()),
            found: crate::error::int(found),
        });
    }
    Ok(out)
}

fn is_separator(c: char) -> bool {
    c.is_whitespace()
        || matches!(
            c,
            '-' | '\u{00AD}' | '\u{2010}'..='\u{2015}' | '\u{2212}' | '\u{FE63}' | '\u{FF0D}'
        )
}

/// Full-width ASCII variants (U+FF01 to U+FF5E) to ASCII.
fn fold_full_width(c: char) -> char {
    let cp = u32::from(c);
    if (0xFF01..=0xFF5E).contains(&cp) {
        char::from_u32(cp.saturating_sub(0xFEE0)).unwrap_or(c)
    } else {
        c
    }
}

/// The value of a decimal digit of any script. Unicode encodes every `Nd`
/// digit in runs of ten from zero to nine, so the value is the distance from
/// the start of the run, modulo ten.
fn decimal_value(c: char) -> Option<u8> {
    if let Some(d) = c.to_digit(10) {
        return u8::try_from(d).ok();
    }
    if c.general_category() != GeneralCategory::DecimalNumber {
        return None;
    }
    let mut start = u32::from(c);
    while let Some(prev) = start.checked_sub(1).and_then(char::from_u32) {
        if prev.general_category() != GeneralCategory::DecimalNumber {
            break;
        }
        start = u32::from(prev);
    }
    u8::try_from(u32::from(c).saturating_sub(start) % 10).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    const SIX: CodeFormat = CodeFormat::Numeric { digits: 6 };
    const CROCK: CodeFormat = CodeFormat::Crockford { length: 8 };

    #[test]
    fn sequences_end_at_two_to_the_63_minus_one() {
        let key = MasterKey::generate("k1").unwrap();
        assert!(derive_code(&key, "PKG-1", MAX_SEQUENCE, SIX).is_ok());
        let err = derive_code(&key, "PKG-1", MAX_SEQUENCE + 1, SIX).unwrap_err();
        assert_eq!(err.kind(), "invalid_number");
        assert_eq!(
            err.to_string(),
            "invalid sequence: a sequence is 0 to 9223372036854775807"
        );
    }

    #[test]
    fn digits_of_every_script_become_ascii() {
        for typed in [
            "482913",
            "482 913",
            "482-913",
            "４８２９１３",
            "٤٨٢٩١٣",
            "۴۸۲۹۱۳",
            "४८२९१३",
            "৪৮২৯১৩",
            "48\u{00A0}29\u{2013}13",
            "𝟒𝟖𝟐𝟗𝟏𝟑",
            "\u{3000}482\u{3000}913 ",
        ] {
            assert_eq!(normalize(typed, SIX).unwrap().as_str(), "482913", "{typed}");
        }
    }

    #[test]
    fn anything_else_is_an_error_at_its_position() {
        assert_eq!(
            normalize("48291x", SIX).unwrap_err(),
            Error::InvalidCodeCharacter { position: 6 }
        );
        assert_eq!(
            normalize("4²2913", SIX).unwrap_err(),
            Error::InvalidCodeCharacter { position: 2 }
        );
        assert_eq!(
            normalize("O82913", SIX).unwrap_err(),
            Error::InvalidCodeCharacter { position: 1 }
        );
        assert_eq!(
            normalize("48291", SIX).unwrap_err(),
            Error::WrongCodeLength {
                expected: 6,
                found: 5
            }
        );
        assert_eq!(
            normalize("4829134", SIX).unwrap_err(),
            Error::WrongCodeLength {
                expected: 6,
                found: 7
            }
        );
        assert_eq!(
            normalize(" - ", SIX).unwrap_err(),
            Error::WrongCodeLength {
                expected: 6,
                found: 0
            }
        );
    }

    #[test]
    fn crockford_reads_o_i_l_and_lower_case() {
        assert_eq!(normalize("ab1o-il0z", CROCK).unwrap().as_str(), "AB10110Z");
        assert_eq!(
            normalize("ＡＢ１Ｏｉｌ０ｚ", CROCK).unwrap().as_str(),
            "AB10110Z"
        );
        assert_eq!(
            normalize("AB10U10Z", CROCK).unwrap_err(),
            Error::InvalidCodeCharacter { position: 5 }
        );
    }

    #[test]
    fn grouping_for_reading_aloud() {
        let cases = [
            ("1234", "1234"),
            ("12345", "12345"),
            ("123456", "123 456"),
            ("1234567", "123 4567"),
            ("12345678", "1234 5678"),
            ("123456789", "123 456 789"),
            ("1234567890", "123 456 7890"),
            ("ABCDEFGHJKMN", "ABC DEF GHJ KMN"),
            ("ABCDEFGHJKM", "ABC DEF GHJ KM"),
        ];
        for (code, grouped) in cases {
            assert_eq!(group(code), grouped);
        }
    }

    #[test]
    fn delivery_ids_are_checked() {
        check_delivery_id("PKG-2026-000123").unwrap();
        for bad in ["", " x", "x ", "a\nb", &"x".repeat(129)] {
            assert_eq!(
                check_delivery_id(bad).unwrap_err().kind(),
                "invalid_delivery_id"
            );
        }
    }
}
