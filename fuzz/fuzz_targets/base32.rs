//! Base32 secrets as typed on an enrolment screen: any text either reads or
//! gets a typed error, and what reads writes back to the same bytes.
#![no_main]

use delivery_otp::Secret;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    if let Ok(secret) = Secret::from_base32(&text) {
        let again = Secret::from_base32(&secret.to_base32()).expect("our own base32 reads back");
        assert_eq!(again.expose_bytes(), secret.expose_bytes());
        assert!(!secret.is_empty());
    }
    // Raw bytes become a secret unless empty.
    assert_eq!(Secret::from_bytes(data).is_ok(), !data.is_empty());
});
