//! What a courier types: any text in any script either normalizes or gets a
//! typed error. A normalized code has the format's length and alphabet and
//! normalizes to itself.
#![no_main]

use delivery_otp::{normalize, CodeFormat};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&pick, rest)) = data.split_first() else {
        return;
    };
    let length = 4 + i32::from(pick >> 1) % 9;
    let format = if pick & 1 == 0 {
        CodeFormat::Numeric {
            digits: length.min(10),
        }
    } else {
        CodeFormat::Crockford { length }
    };
    let text = String::from_utf8_lossy(rest);
    if let Ok(code) = normalize(&text, format) {
        assert_eq!(code.chars().count() as u32, format.length());
        assert!(code
            .bytes()
            .all(|b| b.is_ascii_digit() || b.is_ascii_uppercase()));
        let again = normalize(&code, format).expect("a normalized code normalizes");
        assert_eq!(*again, *code);
    }
});
