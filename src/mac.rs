//! HMAC-SHA256 over length-delimited parts: the one keyed primitive behind
//! delivery codes, ticket hashes and ticket MACs.

use hmac::digest::KeyInit;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use zeroize::Zeroizing;

/// HMAC-SHA256 of `domain`, then each part prefixed with its length as a
/// 4-byte big-endian number, so no two different inputs give the same
/// message and each purpose has its own domain.
pub(crate) fn hmac_sha256(key: &[u8], domain: &[u8], parts: &[&[u8]]) -> Zeroizing<[u8; 32]> {
    let mut out = Zeroizing::new([0u8; 32]);
    // HMAC accepts keys of any length; the error arm cannot happen.
    let Ok(mut mac) = <Hmac<Sha256> as KeyInit>::new_from_slice(key) else {
        return out;
    };
    mac.update(domain);
    for part in parts {
        let len = u32::try_from(part.len()).unwrap_or(u32::MAX);
        mac.update(&len.to_be_bytes());
        mac.update(part);
    }
    out.copy_from_slice(&mac.finalize().into_bytes());
    out
}
