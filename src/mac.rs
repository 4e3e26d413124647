//! HMAC-SHA256 over length-delimited parts: the one keyed primitive behind
//! delivery codes, ticket hashes, ticket MACs, device keys and receipt MACs.

use core::fmt;

use hmac::digest::KeyInit;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use zeroize::Zeroizing;

/// An HMAC-SHA256 key with its inner and outer pad blocks hashed once.
///
/// Setting up an HMAC key costs two of the four SHA-256 compressions that a
/// short message needs; a long-lived key (a master key, a device key) keeps
/// this state and clones it for each message instead. The state is derived
/// from the key, so it is wiped on drop (the `zeroize` features of `hmac` and
/// `sha2`) and `Debug` shows nothing of it.
#[derive(Clone)]
pub(crate) struct MacKey(Hmac<Sha256>);

impl MacKey {
    /// Sets up `key`. HMAC accepts keys of any length (RFC 2104 section 2),
    /// so `None` does not happen; callers still turn it into a typed error.
    pub(crate) fn new(key: &[u8]) -> Option<Self> {
        <Hmac<Sha256> as KeyInit>::new_from_slice(key)
            .ok()
            .map(MacKey)
    }

    /// HMAC-SHA256 of `domain`, then each part prefixed with its length as a
    /// 4-byte big-endian number, so no two different inputs give the same
    /// message and each purpose has its own domain.
    pub(crate) fn sign(&self, domain: &[u8], parts: &[&[u8]]) -> Zeroizing<[u8; 32]> {
        let mut mac = self.0.clone();
        mac.update(domain);
        for part in parts {
            let len = u32::try_from(part.len()).unwrap_or(u32::MAX);
            mac.update(&len.to_be_bytes());
            mac.update(part);
        }
        let mut out = Zeroizing::new([0u8; 32]);
        // `CtOutput` wipes its copy when dropped.
        out.copy_from_slice(mac.finalize().as_bytes());
        out
    }
}

impl fmt::Debug for MacKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("MacKey([redacted])")
    }
}

/// [`MacKey::sign`] with a key used once (a ticket's hash key).
pub(crate) fn hmac_sha256(key: &[u8], domain: &[u8], parts: &[&[u8]]) -> Zeroizing<[u8; 32]> {
    match MacKey::new(key) {
        Some(key) => key.sign(domain, parts),
        // Unreachable (see `MacKey::new`); an all-zero MAC matches nothing real.
        None => Zeroizing::new([0u8; 32]),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_set_up_key_gives_the_same_mac_each_time_and_as_a_fresh_one() {
        let key = MacKey::new(b"key").unwrap();
        let parts: [&[u8]; 2] = [b"a", b"bc"];
        let first = key.sign(b"d", &parts);
        assert_eq!(*first, *key.sign(b"d", &parts));
        assert_eq!(*first, *hmac_sha256(b"key", b"d", &parts));
        // The length prefixes keep ("a", "bc") and ("ab", "c") apart.
        assert_ne!(*first, *key.sign(b"d", &[b"ab", b"c"]));
    }

    #[test]
    fn matches_rfc_4231_test_case_2_for_an_empty_part_list() {
        // RFC 4231 test case 2: key "Jefe", data "what do ya want for nothing?".
        let mac = hmac_sha256(b"Jefe", b"what do ya want for nothing?", &[]);
        let hex: String = mac.iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(
            hex,
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    #[test]
    fn debug_shows_nothing_of_the_key() {
        assert_eq!(
            format!("{:?}", MacKey::new(b"secret").unwrap()),
            "MacKey([redacted])"
        );
    }
}
