//! Shared secrets: RFC 4648 base32 in and out, fresh ones from the OS.

use core::fmt;

use rand::rngs::SysRng;
use rand::TryRng;
use subtle::ConstantTimeEq;
use zeroize::{Zeroize, ZeroizeOnDrop, Zeroizing};

use crate::error::{Error, Result};

/// Size of a new secret unless another is asked for: 160 bits, as RFC 4226
/// section 4 (R6) recommends.
pub const DEFAULT_SECRET_BYTES: u32 = 20;
/// The smallest new secret the library creates: 128 bits (RFC 4226 R6).
pub const MIN_NEW_SECRET_BYTES: u32 = 16;
/// The largest new secret the library creates: 1024 bits, one SHA-512 block.
pub const MAX_NEW_SECRET_BYTES: u32 = 128;

/// The key shared by the server and the authenticator.
///
/// The bytes are wiped from memory when the value is dropped, `Debug` prints
/// `Secret([redacted])`, and `==` compares in constant time.
#[derive(Clone, Zeroize, ZeroizeOnDrop)]
pub struct Secret {
    bytes: Vec<u8>,
}

impl Secret {
    /// Takes raw key bytes. Secrets shorter than 128 bits are accepted here,
    /// because existing enrolments use them; only [`Secret::generate`] insists
    /// on the RFC's minimum.
    ///
    /// # Errors
    /// [`Error::EmptySecret`] when `bytes` is empty.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self> {
        if bytes.is_empty() {
            return Err(Error::EmptySecret);
        }
        Ok(Secret {
            bytes: bytes.to_vec(),
        })
    }

    /// Reads RFC 4648 base32 text, as found in `otpauth://` URIs and typed
    /// from enrolment screens.
    ///
    /// Letters may be in either case; `=` padding at the end is optional;
    /// spaces and dashes anywhere are ignored (`JBSW Y3DP-EHPK 3PXP`).
    ///
    /// # Errors
    /// - [`Error::InvalidBase32Character`] with the position (counting
    ///   characters from 1) of the first character that is not allowed, or of
    ///   anything but padding after the padding started;
    /// - [`Error::InvalidBase32Length`] when the number of base32 characters
    ///   cannot encode whole bytes (1, 3 or 6 more than a multiple of 8);
    /// - [`Error::EmptySecret`] when there are no base32 characters at all.
    pub fn from_base32(text: &str) -> Result<Self> {
        let mut clean = Zeroizing::new(String::with_capacity(text.len()));
        let mut padding_started = false;
        for (index, c) in text.chars().enumerate() {
            let position = (index as u64).saturating_add(1);
            match c {
                ' ' | '-' => {}
                '=' => padding_started = true,
                'A'..='Z' | 'a'..='z' | '2'..='7' if !padding_started => {
                    clean.push(c.to_ascii_uppercase())
                }
                _ => {
                    return Err(Error::InvalidBase32Character {
                        position: crate::error::int(position),
                    })
                }
            }
        }
        if clean.is_empty() {
            return Err(Error::EmptySecret);
        }
        if matches!(clean.len() % 8, 1 | 3 | 6) {
            return Err(Error::InvalidBase32Length {
                length: crate::error::int(clean.len()),
            });
        }
        // Every character was checked above, so the decoder cannot refuse;
        // should it ever, report it as a length problem rather than panic.
        let bytes = crate::b32::decode_any(&clean).ok_or(Error::InvalidBase32Length {
            length: crate::error::int(clean.len()),
        })?;
        Secret::from_bytes(&bytes)
    }

    /// A new secret of [`DEFAULT_SECRET_BYTES`] (160 bits) from the operating
    /// system's random generator.
    ///
    /// # Errors
    /// [`Error::RandomUnavailable`] if the OS generator fails.
    pub fn generate() -> Result<Self> {
        Self::generate_with_len(DEFAULT_SECRET_BYTES)
    }

    /// A new secret of `bytes` bytes from the operating system's random
    /// generator.
    ///
    /// # Errors
    /// - [`Error::SecretTooShort`] below 16 bytes (128 bits, RFC 4226 R6);
    /// - [`Error::SecretTooLong`] above 128 bytes;
    /// - [`Error::RandomUnavailable`] if the OS generator fails.
    pub fn generate_with_len(bytes: u32) -> Result<Self> {
        let bits = i64::from(bytes).saturating_mul(8);
        if bytes < MIN_NEW_SECRET_BYTES {
            return Err(Error::SecretTooShort {
                bits,
                min_bits: i64::from(MIN_NEW_SECRET_BYTES).saturating_mul(8),
            });
        }
        if bytes > MAX_NEW_SECRET_BYTES {
            return Err(Error::SecretTooLong {
                bits,
                max_bits: i64::from(MAX_NEW_SECRET_BYTES).saturating_mul(8),
            });
        }
        let mut secret = Secret {
            bytes: vec![0u8; bytes as usize],
        };
        SysRng
            .try_fill_bytes(&mut secret.bytes)
            .map_err(|_| Error::RandomUnavailable)?;
        Ok(secret)
    }

    /// The secret as RFC 4648 base32, upper case, without padding (the form
    /// `otpauth://` URIs use). The returned text is wiped when dropped.
    pub fn to_base32(&self) -> Zeroizing<String> {
        Zeroizing::new(crate::b32::encode(&self.bytes))
    }

    /// The raw key bytes.
    pub fn expose_bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// Length of the key in bytes.
    pub fn len(&self) -> usize {
        self.bytes.len()
    }

    /// Always false: a `Secret` is never empty.
    pub fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret([redacted])")
    }
}

impl PartialEq for Secret {
    fn eq(&self, other: &Self) -> bool {
        self.bytes.ct_eq(&other.bytes).into()
    }
}

impl Eq for Secret {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_lower_case_separators_and_padding() {
        let a = Secret::from_base32("JBSWY3DPEHPK3PXP").unwrap();
        let b = Secret::from_base32("jbsw y3dp-ehpk 3pxp").unwrap();
        assert_eq!(a, b);
        assert_eq!(a.expose_bytes(), b"Hello!\xde\xad\xbe\xef");
        assert_eq!(
            Secret::from_base32("MY======").unwrap().expose_bytes(),
            b"f"
        );
        assert_eq!(Secret::from_base32("MY").unwrap().expose_bytes(), b"f");
    }

    #[test]
    fn reports_the_position_of_a_bad_character() {
        assert_eq!(
            Secret::from_base32("JBSW1Y3DP").unwrap_err(),
            Error::InvalidBase32Character { position: 5 }
        );
        // Multi-byte characters count as one position.
        assert_eq!(
            Secret::from_base32("ééMY").unwrap_err(),
            Error::InvalidBase32Character { position: 1 }
        );
        // Data after padding.
        assert_eq!(
            Secret::from_base32("MY==MY").unwrap_err(),
            Error::InvalidBase32Character { position: 5 }
        );
    }

    #[test]
    fn refuses_impossible_lengths_and_empty_text() {
        for (text, length) in [("M", 1), ("MZX", 3), ("MZXW6Y", 6), ("MZXW6YTBO", 9)] {
            assert_eq!(
                Secret::from_base32(text).unwrap_err(),
                Error::InvalidBase32Length { length }
            );
        }
        assert_eq!(Secret::from_base32(" - ").unwrap_err(), Error::EmptySecret);
        assert_eq!(Secret::from_base32("").unwrap_err(), Error::EmptySecret);
        assert_eq!(Secret::from_bytes(&[]).unwrap_err(), Error::EmptySecret);
    }

    #[test]
    fn generated_secrets_have_the_asked_size_and_differ() {
        let a = Secret::generate().unwrap();
        let b = Secret::generate().unwrap();
        assert_eq!(a.len(), 20);
        assert_ne!(a, b);
        assert_eq!(Secret::generate_with_len(16).unwrap().len(), 16);
        assert_eq!(
            Secret::generate_with_len(15).unwrap_err(),
            Error::SecretTooShort {
                bits: 120,
                min_bits: 128
            }
        );
        assert_eq!(
            Secret::generate_with_len(u32::MAX).unwrap_err(),
            Error::SecretTooLong {
                bits: i64::from(u32::MAX) * 8,
                max_bits: 1024
            }
        );
    }

    #[test]
    fn base32_out_has_no_padding_and_round_trips() {
        let s = Secret::from_bytes(b"foobar").unwrap();
        assert_eq!(s.to_base32().as_str(), "MZXW6YTBOI");
        assert_eq!(Secret::from_base32(&s.to_base32()).unwrap(), s);
    }

    #[test]
    fn debug_is_redacted() {
        let s = Secret::from_bytes(b"12345678901234567890").unwrap();
        assert_eq!(format!("{s:?}"), "Secret([redacted])");
    }
}
