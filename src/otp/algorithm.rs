//! The HMAC hash functions of RFC 4226 and RFC 6238.

use core::fmt;
use core::str::FromStr;

use crate::error::Error;

/// The hash function under the HMAC (RFC 6238 section 1.2 allows SHA-1,
/// SHA-256 and SHA-512; RFC 4226 uses SHA-1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[cfg_attr(feature = "ffi", derive(uniffi::Enum))]
pub enum Algorithm {
    /// HMAC-SHA-1, the default of RFC 4226, RFC 6238 and `otpauth://` URIs.
    #[default]
    Sha1,
    /// HMAC-SHA-256.
    Sha256,
    /// HMAC-SHA-512.
    Sha512,
}

impl Algorithm {
    /// The name used in `otpauth://` URIs: `SHA1`, `SHA256` or `SHA512`.
    pub fn as_str(self) -> &'static str {
        match self {
            Algorithm::Sha1 => "SHA1",
            Algorithm::Sha256 => "SHA256",
            Algorithm::Sha512 => "SHA512",
        }
    }
}

impl fmt::Display for Algorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Algorithm {
    type Err = Error;

    /// Reads `SHA1`, `SHA256` or `SHA512`, in any case, with or without a dash
    /// (`sha-256`).
    ///
    /// # Errors
    /// [`Error::UnsupportedAlgorithm`] for any other name.
    fn from_str(name: &str) -> Result<Self, Error> {
        let compact: String = name
            .chars()
            .filter(|c| *c != '-')
            .map(|c| c.to_ascii_uppercase())
            .collect();
        match compact.as_str() {
            "SHA1" => Ok(Algorithm::Sha1),
            "SHA256" => Ok(Algorithm::Sha256),
            "SHA512" => Ok(Algorithm::Sha512),
            _ => Err(Error::UnsupportedAlgorithm),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_are_case_insensitive() {
        for a in [Algorithm::Sha1, Algorithm::Sha256, Algorithm::Sha512] {
            assert_eq!(a.as_str().parse::<Algorithm>(), Ok(a));
            assert_eq!(a.as_str().to_lowercase().parse::<Algorithm>(), Ok(a));
        }
        assert_eq!("sha-512".parse::<Algorithm>(), Ok(Algorithm::Sha512));
        assert_eq!("MD5".parse::<Algorithm>(), Err(Error::UnsupportedAlgorithm));
        assert_eq!("".parse::<Algorithm>(), Err(Error::UnsupportedAlgorithm));
    }
}
