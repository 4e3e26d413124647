//! Signed requests from courier devices. The app signs each HTTP request it
//! sends the service with its device key, and the service checks it, so a
//! phone needs no API token and no other device can speak for it.
//!
//! The signature covers the method, the path with its query, the time, and
//! the SHA-256 of the body:
//!
//! ```text
//! mac = HMAC-SHA256(device key, "delivery-otp/v1/device-request"
//!                   || len32(method) || method || len32(path) || path
//!                   || len32(8) || time as 8 bytes big-endian
//!                   || len32(32) || SHA-256(body))
//! ```
//!
//! (each part preceded by its length as 4 bytes big-endian), and travels in
//! the `Authorization` header:
//!
//! ```text
//! DeliveryOtp-Device v=1,kid=<key id>,courier=<id>,device=<id>,ts=<unix seconds>,sig=<base32 mac>
//! ```
//!
//! Ids are percent-encoded (every byte but `A-Z a-z 0-9 - . _ ~`). The
//! service accepts a signature within [`REQUEST_WINDOW_SECS`] of its own
//! clock, and each signature once.

use percent_encoding::{percent_decode_str, utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::delivery::backend::Backend;
use crate::delivery::keys::check_key_id;
use crate::error::{Error, Result};
use crate::proof::receipt::{check_party_id, decode_32, DeviceKey};

/// The scheme in the `Authorization` header.
pub const SCHEME: &str = "DeliveryOtp-Device";
/// How far a request's time may be from the service's clock, either way.
pub const REQUEST_WINDOW_SECS: u64 = 300;
/// Longest header the service reads.
pub const MAX_HEADER_BYTES: usize = 512;
const DOMAIN: &[u8] = b"delivery-otp/v1/device-request";
/// Unreserved characters (RFC 3986) stay as they are.
const ENCODE: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

fn invalid(reason: impl Into<String>) -> Error {
    Error::InvalidRequestSignature {
        reason: reason.into(),
    }
}

fn parts_mac(key: &DeviceKey, method: &str, path: &str, timestamp: u64, body: &[u8]) -> [u8; 32] {
    let digest: [u8; 32] = Sha256::digest(body).into();
    *key.request_mac(
        DOMAIN,
        &[
            method.as_bytes(),
            path.as_bytes(),
            &timestamp.to_be_bytes(),
            &digest,
        ],
    )
}

impl DeviceKey {
    /// The `Authorization` header value for a request: `method` as sent
    /// (`GET`, `POST`), `path` with its query (`/v1/receipts`), the device's
    /// time in unix seconds, and the exact body bytes (empty for none).
    pub fn sign_request(&self, method: &str, path: &str, timestamp: u64, body: &[u8]) -> String {
        let mac = parts_mac(self, method, path, timestamp, body);
        format!(
            "{SCHEME} v=1,kid={},courier={},device={},ts={timestamp},sig={}",
            utf8_percent_encode(self.key_id(), ENCODE),
            utf8_percent_encode(self.courier_id(), ENCODE),
            utf8_percent_encode(self.device_id(), ENCODE),
            crate::b32::encode(&mac)
        )
    }
}

/// A device's request, as its signature says, once checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedRequest {
    /// The master key the device key derives from.
    pub key_id: String,
    /// The courier.
    pub courier_id: String,
    /// The device.
    pub device_id: String,
    /// The device's time, unix seconds.
    pub timestamp: u64,
    /// The signature, base32: what a replay store keeps to accept each once.
    pub signature: String,
}

fn field<'a>(fields: &[(&'a str, &'a str)], name: &str) -> Result<&'a str> {
    let mut found = fields.iter().filter(|(k, _)| *k == name);
    match (found.next(), found.next()) {
        (Some((_, v)), None) => Ok(v),
        (None, _) => Err(invalid(format!("the '{name}' field is missing"))),
        (Some(_), Some(_)) => Err(invalid(format!("the '{name}' field appears twice"))),
    }
}

fn decoded(fields: &[(&str, &str)], name: &str) -> Result<String> {
    percent_decode_str(field(fields, name)?)
        .decode_utf8()
        .map(|s| s.into_owned())
        .map_err(|_| invalid(format!("the '{name}' field is not percent-encoded UTF-8")))
}

impl Backend {
    /// Checks a device's `Authorization` header against the request it came
    /// with (`method`, `path` with its query, `body`) at the service's time
    /// `now`: the form, the time window, and the MAC with the device key
    /// derived for the ids it names. Whether the device is still provisioned,
    /// and whether this signature came before, is the caller's to check.
    ///
    /// # Errors
    /// [`Error::InvalidRequestSignature`] saying what does not hold (never a
    /// key); [`Error::UnknownKeyId`] for a key id not in the key set.
    pub fn verify_request(
        &self,
        header: &str,
        method: &str,
        path: &str,
        body: &[u8],
        now: u64,
    ) -> Result<SignedRequest> {
        if header.len() > MAX_HEADER_BYTES {
            return Err(invalid(format!(
                "the header is over {MAX_HEADER_BYTES} bytes"
            )));
        }
        let rest = header
            .strip_prefix(SCHEME)
            .and_then(|r| r.strip_prefix(' '))
            .ok_or_else(|| invalid(format!("the header does not start with '{SCHEME} '")))?;
        let fields: Vec<(&str, &str)> = rest
            .split(',')
            .map(|f| {
                f.split_once('=')
                    .ok_or_else(|| invalid("a field is not name=value"))
            })
            .collect::<Result<_>>()?;
        if field(&fields, "v")? != "1" {
            return Err(invalid("unknown version; this library signs version 1"));
        }
        let key_id = decoded(&fields, "kid")?;
        check_key_id(&key_id)?;
        let courier_id = decoded(&fields, "courier")?;
        check_party_id(&courier_id, "courier").map_err(invalid)?;
        let device_id = decoded(&fields, "device")?;
        check_party_id(&device_id, "device").map_err(invalid)?;
        let ts = field(&fields, "ts")?;
        if ts.is_empty() || ts.len() > 20 || !ts.bytes().all(|b| b.is_ascii_digit()) {
            return Err(invalid("the time is not unix seconds"));
        }
        let timestamp: u64 = ts
            .parse()
            .map_err(|_| invalid("the time is not unix seconds"))?;
        if now.abs_diff(timestamp) > REQUEST_WINDOW_SECS {
            return Err(invalid(format!(
                "the request's time is more than {REQUEST_WINDOW_SECS} s from the service's clock"
            )));
        }
        let signature = field(&fields, "sig")?;
        let claimed = decode_32(signature)
            .ok_or_else(|| invalid("the signature is not 32 bytes of base32"))?;
        let key = self.device_key_for(&key_id, &courier_id, &device_id)?;
        let expected = parts_mac(&key, method, path, timestamp, body);
        if !bool::from(expected.ct_eq(&claimed)) {
            return Err(invalid(
                "the signature does not match this request (method, path, time, body) and device",
            ));
        }
        Ok(SignedRequest {
            key_id,
            courier_id,
            device_id,
            timestamp,
            signature: signature.to_string(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::attempts::InMemoryAttemptStore;
    use crate::KeySet;
    use std::sync::Arc;

    fn backend() -> Backend {
        let keys = KeySet::from_json(
            r#"{"version":1,"current":"k1","keys":[{"id":"k1","secret":"GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQGEZA"}]}"#,
        )
        .unwrap();
        Backend::new(keys, Arc::new(InMemoryAttemptStore::new()))
    }

    #[test]
    fn a_signed_request_verifies_and_any_change_is_refused() {
        let b = backend();
        let key = b.provision_device("courier 17/ü", "phone-1").unwrap();
        let body = br#"{"receipts":[]}"#;
        let header = key.sign_request("POST", "/v1/receipts", 1_000_000, body);
        assert!(header.starts_with("DeliveryOtp-Device v=1,kid=k1,courier=courier%2017%2F%C3%BC,device=phone-1,ts=1000000,sig="));
        let ok = b
            .verify_request(&header, "POST", "/v1/receipts", body, 1_000_100)
            .unwrap();
        assert_eq!(
            (ok.courier_id.as_str(), ok.device_id.as_str(), ok.timestamp),
            ("courier 17/ü", "phone-1", 1_000_000)
        );
        let kind = |r: Result<SignedRequest>| r.unwrap_err().kind();
        for (method, path, body_, now) in [
            ("GET", "/v1/receipts", &body[..], 1_000_000),
            ("POST", "/v1/receipts?x=1", &body[..], 1_000_000),
            ("POST", "/v1/receipts", &b"{}"[..], 1_000_000),
            ("POST", "/v1/receipts", &body[..], 1_000_301),
            ("POST", "/v1/receipts", &body[..], 999_699),
        ] {
            assert_eq!(
                kind(b.verify_request(&header, method, path, body_, now)),
                "invalid_request_signature"
            );
        }
        // Another device's ids with this device's signature.
        let forged = header.replace("device=phone-1", "device=phone-2");
        assert_eq!(
            kind(b.verify_request(&forged, "POST", "/v1/receipts", body, 1_000_000)),
            "invalid_request_signature"
        );
        for bad in [
            "",
            "Bearer x",
            "DeliveryOtp-Device",
            "DeliveryOtp-Device v=2,kid=k1,courier=c,device=d,ts=1,sig=A",
            "DeliveryOtp-Device v=1,v=1,kid=k1,courier=c,device=d,ts=1000000,sig=A",
            "DeliveryOtp-Device v=1,kid=k1,courier=c,device=d,ts=-1,sig=A",
            "DeliveryOtp-Device v=1,kid=k1,courier=%FF,device=d,ts=1000000,sig=A",
            "DeliveryOtp-Device v=1,kid=k1,courier=%0A,device=d,ts=1000000,sig=A",
            "DeliveryOtp-Device v=1,kid=k1,courier=c,device=d,ts=1000000,sig=notbase32",
            &format!(
                "DeliveryOtp-Device v=1,kid=k1,courier={},device=d,ts=1000000,sig=A",
                "c".repeat(600)
            ),
        ] {
            assert_eq!(
                kind(b.verify_request(bad, "POST", "/v1/receipts", body, 1_000_000)),
                "invalid_request_signature",
                "{bad}"
            );
        }
        let unknown = header.replace("kid=k1", "kid=k9");
        assert_eq!(
            kind(b.verify_request(&unknown, "POST", "/v1/receipts", body, 1_000_000)),
            "unknown_key_id"
        );
    }
}
