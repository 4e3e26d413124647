//! RFC 4648 base32, upper case, without padding: the one form the library
//! writes keys, ticket hash keys and MACs in. Encoded and decoded with
//! RustCrypto's `base32ct`, which neither branches on nor indexes a table by
//! the bytes, so a secret's base32 takes the same time whatever it holds,
//! and writes into room of the exact size (one allocation, or none).

use base32ct::{Base32UpperUnpadded, Encoding};
use zeroize::Zeroizing;

/// The base32 of `bytes`.
pub(crate) fn encode(bytes: &[u8]) -> String {
    Base32UpperUnpadded::encode_string(bytes)
}

/// The base32 of `bytes` put after what `out` holds.
pub(crate) fn encode_onto(out: &mut Vec<u8>, bytes: &[u8]) {
    // Up to 40 bytes (64 characters) on the stack, more through a string.
    let mut room = [0u8; 64];
    match Base32UpperUnpadded::encode(bytes, &mut room) {
        Ok(text) => out.extend_from_slice(text.as_bytes()),
        Err(_) => out.extend_from_slice(encode(bytes).as_bytes()),
    }
}

/// The characters `N` bytes take, rounded up to whole characters.
const fn chars_for(n: usize) -> usize {
    n.saturating_mul(8).div_ceil(5)
}

/// The `N` bytes whose base32 is exactly `text`, or `None`: any other
/// text (lower case, padding, white space, a wrong length, or a last
/// character with bits set past the last byte, which decoders take as the
/// same bytes) does not read.
pub(crate) fn decode_exact<const N: usize>(text: &str) -> Option<Zeroizing<[u8; N]>> {
    let chars = text.as_bytes();
    if chars.len() != chars_for(N) {
        return None;
    }
    // The bits of the last character past the last byte must be zero.
    let spare = chars_for(N)
        .saturating_mul(5)
        .saturating_sub(N.saturating_mul(8));
    let last = match chars.last() {
        Some(c @ b'A'..=b'Z') => c.wrapping_sub(b'A'),
        Some(c @ b'2'..=b'7') => c.wrapping_sub(b'2').wrapping_add(26),
        Some(_) => return None,
        None => return (N == 0).then(|| Zeroizing::new([0u8; N])),
    };
    // `spare` is below 5: the mask of that many low bits.
    let mask = u8::try_from(spare)
        .ok()
        .and_then(|bits| 1u8.checked_shl(u32::from(bits)))
        .map_or(u8::MAX, |bit| bit.saturating_sub(1));
    if last & mask != 0 {
        return None;
    }
    let mut bytes = Zeroizing::new([0u8; N]);
    let read = Base32UpperUnpadded::decode(chars, bytes.as_mut())
        .ok()?
        .len();
    (read == N).then_some(bytes)
}

/// The bytes of `text` as base32 in any length (a shared secret typed by a
/// person, already upper case and without padding), or `None` for a
/// character outside the alphabet or a length that cannot end on a byte.
pub(crate) fn decode_any(text: &str) -> Option<Zeroizing<Vec<u8>>> {
    Base32UpperUnpadded::decode_vec(text)
        .ok()
        .map(Zeroizing::new)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 4648 section 10, without the padding.
    #[test]
    fn matches_rfc_4648_test_vectors() {
        for (bytes, text) in [
            ("", ""),
            ("f", "MY"),
            ("fo", "MZXQ"),
            ("foo", "MZXW6"),
            ("foob", "MZXW6YQ"),
            ("fooba", "MZXW6YTB"),
            ("foobar", "MZXW6YTBOI"),
        ] {
            assert_eq!(encode(bytes.as_bytes()), text);
            let mut onto = b"x".to_vec();
            encode_onto(&mut onto, bytes.as_bytes());
            assert_eq!(onto, format!("x{text}").as_bytes());
            assert_eq!(decode_any(text).unwrap().as_slice(), bytes.as_bytes());
        }
    }

    #[test]
    fn reads_exactly_the_text_it_writes() {
        let mut value = [0u8; 32];
        for seed in 0..=255u8 {
            for (i, b) in value.iter_mut().enumerate() {
                *b = seed.wrapping_mul(73).wrapping_add(i as u8).rotate_left(3);
            }
            let text = encode(&value);
            assert_eq!(text.len(), 52);
            assert_eq!(*decode_exact::<32>(&text).unwrap(), value);
            let head = &text[..51];
            // Of the 32 last characters only those with the spare bits at
            // zero read; each of them is the base32 of what it reads as.
            let mut read = 0;
            for last in "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567".chars() {
                let other = format!("{head}{last}");
                if let Some(bytes) = decode_exact::<32>(&other) {
                    assert_eq!(encode(bytes.as_slice()), other);
                    read += 1;
                }
            }
            assert_eq!(read, 2, "{text}");
            for other in [
                text.to_lowercase(),
                format!("{text}===="),
                format!("{text}A"),
                text[1..].to_string(),
                format!(" {}", &text[1..]),
                format!("{}1", &text[..51]),
            ] {
                assert!(decode_exact::<32>(&other).is_none(), "{other}");
            }
        }
        // 16 bytes: 26 characters, two spare bits.
        let text = encode(&[0xffu8; 16]);
        assert_eq!(text.len(), 26);
        assert_eq!(*decode_exact::<16>(&text).unwrap(), [0xffu8; 16]);
        assert!(decode_exact::<16>(&format!("{}7", &text[..25])).is_none());
    }

    #[test]
    fn decode_any_refuses_what_is_not_base32() {
        for text in ["A", "ABC", "ABCDEF", "mzxw6", "MZXW6=", "MZ XW6", "MZXW1"] {
            assert!(decode_any(text).is_none(), "{text}");
        }
    }
}
