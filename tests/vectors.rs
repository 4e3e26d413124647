//! Runs every case of the shared vector files in `tests/vectors/`, the same
//! files the Kotlin and Swift suites read. A failure names the file and case.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    clippy::arithmetic_side_effects
)]

use std::path::Path;
use std::time::Duration;

use delivery_otp::{
    Algorithm, Counter, Error, Hotp, KeyUri, OtpKind, Secret, Totp, TotpConfig, Window,
};
use serde::Deserialize;

fn load<T: for<'de> Deserialize<'de>>(file: &str) -> T {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/vectors")
        .join(file);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn hex(text: &str) -> Vec<u8> {
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&text[i..i + 2], 16).unwrap())
        .collect()
}

#[derive(Deserialize)]
struct OtpFile {
    source: String,
    cases: Vec<OtpCase>,
}

#[derive(Deserialize)]
struct OtpCase {
    name: String,
    mode: String,
    secret_hex: String,
    algorithm: String,
    digits: u32,
    code: String,
    counter: Option<String>,
    time: Option<String>,
    period: Option<String>,
    t0: Option<String>,
}

/// Generates and verifies each case's code; returns how many ran.
fn run_otp_file(file: &str) -> usize {
    let vectors: OtpFile = load(file);
    assert!(!vectors.source.is_empty());
    for case in &vectors.cases {
        let ctx = format!("{file}: {}", case.name);
        let secret = Secret::from_bytes(&hex(&case.secret_hex)).unwrap();
        let algorithm: Algorithm = case.algorithm.parse().unwrap();
        match case.mode.as_str() {
            "hotp" => {
                let counter: u64 = case.counter.as_deref().unwrap().parse().unwrap();
                let hotp = Hotp::new(secret, algorithm, case.digits).unwrap();
                assert_eq!(hotp.generate(counter).as_str(), case.code, "{ctx}");
                assert_eq!(
                    hotp.verify(&case.code, counter, 0).unwrap(),
                    Some(counter),
                    "{ctx}"
                );
                let start = counter.saturating_sub(3);
                assert_eq!(
                    hotp.verify(&case.code, start, 3).unwrap(),
                    Some(counter),
                    "{ctx}"
                );
            }
            "totp" => {
                let time: u64 = case.time.as_deref().unwrap().parse().unwrap();
                let config = TotpConfig {
                    algorithm,
                    digits: case.digits,
                    period: case.period.as_deref().unwrap().parse().unwrap(),
                    t0: case.t0.as_deref().unwrap().parse().unwrap(),
                };
                let totp = Totp::new(secret, config).unwrap();
                assert_eq!(totp.generate(time).unwrap().as_str(), case.code, "{ctx}");
                let m = totp
                    .verify(&case.code, time, Window::RECOMMENDED, None)
                    .unwrap();
                assert_eq!(m.map(|m| m.drift), Some(0), "{ctx}");
                let step = totp.step_at(time).unwrap();
                assert_eq!(
                    totp.verify(&case.code, time, Window::RECOMMENDED, Some(Counter(step)))
                        .unwrap(),
                    None,
                    "{ctx}: a used step must not verify again"
                );
            }
            other => panic!("{ctx}: unknown mode {other}"),
        }
    }
    vectors.cases.len()
}

#[test]
fn rfc4226_appendix_d() {
    assert_eq!(run_otp_file("rfc4226-hotp.json"), 50);
}

#[test]
fn rfc6238_appendix_b() {
    assert_eq!(run_otp_file("rfc6238-totp.json"), 18);
}

#[test]
fn reference_implementations() {
    assert!(run_otp_file("reference-implementations.json") > 200);
}

#[derive(Deserialize)]
struct Base32File {
    cases: Vec<Base32Case>,
    invalid: Vec<Base32Invalid>,
    lenient: Vec<Base32Case>,
}

#[derive(Deserialize)]
struct Base32Case {
    name: String,
    bytes_hex: String,
    #[serde(alias = "text")]
    encoded: String,
}

#[derive(Deserialize)]
struct Base32Invalid {
    name: String,
    text: String,
    error: String,
    position: Option<i64>,
    length: Option<i64>,
}

#[test]
fn rfc4648_section_10_and_invalid_base32() {
    let v: Base32File = load("rfc4648-base32.json");
    assert_eq!(v.cases.len(), 6);
    for case in &v.cases {
        let bytes = hex(&case.bytes_hex);
        let secret = Secret::from_base32(&case.encoded).unwrap();
        assert_eq!(secret.expose_bytes(), bytes, "{}", case.name);
        let written = Secret::from_bytes(&bytes).unwrap().to_base32();
        assert_eq!(
            written.as_str(),
            case.encoded.trim_end_matches('='),
            "{}",
            case.name
        );
    }
    for case in &v.lenient {
        let secret = Secret::from_base32(&case.encoded).unwrap();
        assert_eq!(secret.expose_bytes(), hex(&case.bytes_hex), "{}", case.name);
    }
    assert!(!v.invalid.is_empty());
    for case in &v.invalid {
        let err = Secret::from_base32(&case.text).unwrap_err();
        assert_eq!(err.kind(), case.error, "{}", case.name);
        match err {
            Error::InvalidBase32Character { position } => {
                assert_eq!(Some(position), case.position, "{}", case.name)
            }
            Error::InvalidBase32Length { length } => {
                assert_eq!(Some(length), case.length, "{}", case.name)
            }
            _ => {}
        }
    }
}

#[derive(Deserialize)]
struct UriFile {
    valid: Vec<UriValid>,
    invalid: Vec<UriInvalid>,
}

#[derive(Deserialize)]
struct UriValid {
    name: String,
    uri: String,
    #[serde(rename = "type")]
    otp_type: String,
    secret_hex: String,
    issuer: Option<String>,
    account: String,
    algorithm: String,
    digits: u32,
    period: Option<String>,
    counter: Option<String>,
    formatted: String,
}

#[derive(Deserialize)]
struct UriInvalid {
    name: String,
    uri: String,
    error: String,
    parameter: Option<String>,
    position: Option<i64>,
}

#[test]
fn otpauth_uris() {
    let v: UriFile = load("otpauth-uri.json");
    assert!(v.valid.len() >= 10 && v.invalid.len() >= 20);
    for case in &v.valid {
        let key = KeyUri::parse(&case.uri).unwrap_or_else(|e| panic!("{}: {e}", case.name));
        let kind = match case.otp_type.as_str() {
            "totp" => OtpKind::Totp {
                period: Duration::from_secs(case.period.as_deref().unwrap().parse().unwrap()),
            },
            _ => OtpKind::Hotp {
                counter: Counter(case.counter.as_deref().unwrap().parse().unwrap()),
            },
        };
        let expected = KeyUri {
            kind,
            secret: Secret::from_bytes(&hex(&case.secret_hex)).unwrap(),
            issuer: case.issuer.clone(),
            account: case.account.clone(),
            algorithm: case.algorithm.parse().unwrap(),
            digits: case.digits,
        };
        assert_eq!(key, expected, "{}", case.name);
        let formatted = key.to_uri().unwrap();
        assert_eq!(formatted.as_str(), case.formatted, "{}", case.name);
        assert_eq!(
            KeyUri::parse(&formatted).unwrap(),
            key,
            "{}: round trip",
            case.name
        );
    }
    for case in &v.invalid {
        let err = KeyUri::parse(&case.uri).unwrap_err();
        assert_eq!(err.kind(), case.error, "{}: got {err}", case.name);
        match &err {
            Error::InvalidParameter { name, .. }
            | Error::DuplicateParameter { name }
            | Error::ParameterNotAllowed { name, .. } => {
                assert_eq!(Some(name), case.parameter.as_ref(), "{}", case.name)
            }
            Error::InvalidBase32Character { position } => {
                assert_eq!(Some(*position), case.position, "{}", case.name)
            }
            _ => {}
        }
        assert!(
            !err.to_string().contains("MZXW"),
            "{}: message shows the secret",
            case.name
        );
    }
}
