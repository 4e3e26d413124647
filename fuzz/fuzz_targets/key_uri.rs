//! otpauth:// URIs from QR codes: any text either parses or gets a typed
//! error; what parses formats to a URI that parses to the same value, and
//! makes a working generator.
#![no_main]

use delivery_otp::{KeyUri, OtpKind};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let Ok(uri) = KeyUri::parse(&text) else {
        return;
    };
    let written = uri.to_uri().expect("a parsed URI formats");
    let back = KeyUri::parse(&written).expect("our own URI parses");
    assert_eq!(back, uri);
    match uri.kind {
        OtpKind::Totp { .. } => {
            let totp = uri.totp().expect("a parsed TOTP URI makes a generator");
            let code = totp.generate_for_step(1);
            assert_eq!(code.as_str().len(), uri.digits as usize);
        }
        OtpKind::Hotp {
            counter: delivery_otp::Counter(counter),
        } => {
            let hotp = uri.hotp().expect("a parsed HOTP URI makes a generator");
            let code = hotp.generate(counter);
            assert_eq!(
                hotp.verify(code.as_str(), counter, 0).ok(),
                Some(Some(counter))
            );
        }
    }
});
