//! Device request signatures against `tests/vectors/device-requests.json`,
//! written by the independent Python implementation: the Rust core signs
//! byte for byte alike (the Kotlin and Swift suites check the same file), and
//! the backend accepts each signature only for its own request and time.
#![allow(
    clippy::unwrap_used,
    clippy::indexing_slicing,
    clippy::arithmetic_side_effects
)]

mod common;

use std::sync::Arc;

use common::{load, n, s};
use delivery_otp::{Backend, DeviceKey, InMemoryAttemptStore, KeySet};

#[test]
fn signatures_match_the_vectors_and_verify_only_for_their_request() {
    let v = load("device-requests.json");
    let backend = Backend::new(
        KeySet::from_json(&s(&v, "key_set")).unwrap(),
        Arc::new(InMemoryAttemptStore::new()),
    );
    let window = n(&v, "window_secs");
    let cases = v["cases"].as_array().unwrap();
    assert_eq!(cases.len(), 4);
    for c in cases {
        let name = s(c, "name");
        let key = DeviceKey::from_json(&s(c, "device_key")).unwrap();
        let (method, path, ts, body) = (
            s(c, "method"),
            s(c, "path"),
            n(c, "timestamp"),
            s(c, "body"),
        );
        let header = key.sign_request(&method, &path, ts, body.as_bytes());
        assert_eq!(header, s(c, "authorization"), "{name}");
        let ok = backend
            .verify_request(&header, &method, &path, body.as_bytes(), ts + window)
            .unwrap();
        assert_eq!(
            (ok.courier_id.as_str(), ok.device_id.as_str()),
            (key.courier_id(), key.device_id()),
            "{name}"
        );
        let err = backend
            .verify_request(&header, &method, &path, body.as_bytes(), ts + window + 1)
            .unwrap_err();
        assert_eq!(err.kind(), "invalid_request_signature", "{name}");
        let err = backend
            .verify_request(&header, &method, &format!("{path}/x"), body.as_bytes(), ts)
            .unwrap_err();
        assert_eq!(err.kind(), "invalid_request_signature", "{name}");
        assert!(
            !err.to_string().contains(&s(c, "device_key")[20..40]),
            "{name}: key in message"
        );
    }
}
