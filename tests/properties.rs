//! Property tests (proptest). The test command runs them with the default
//! case count below; `PROPTEST_CASES=10000 cargo test --test properties`
//! runs more.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    clippy::arithmetic_side_effects
)]

use std::sync::Arc;

use delivery_otp::Handover;
use delivery_otp::{
    Algorithm, Backend, CodeFormat, DeliverySettings, DeviceKey, InMemoryAttemptStore,
    InMemoryStateStore, KeySet, KeyUri, MasterKey, OfflineOutcome, OfflineVerifier, OnlineOutcome,
    OtpKind, Receipt, ReceiptDetails, Secret, StateStore, Ticket,
};
use proptest::prelude::*;
use zeroize::Zeroizing;

const NOW: u64 = 1_764_000_000;

fn backend() -> Backend {
    Backend::new(
        KeySet::new(MasterKey::from_bytes("k1", &[9u8; 32]).unwrap()),
        Arc::new(InMemoryAttemptStore::new()),
    )
}

fn format_strategy() -> impl Strategy<Value = CodeFormat> {
    prop_oneof![
        (6i32..=10).prop_map(|digits| CodeFormat::Numeric { digits }),
        (4i32..=12).prop_map(|length| CodeFormat::Crockford { length }),
    ]
}

fn delivery_id() -> impl Strategy<Value = String> {
    "[A-Za-z0-9][A-Za-z0-9 /._ü-]{0,30}[A-Za-z0-9]"
}

/// A code of `format` built from `seed`, which may or may not be the issued one.
fn some_code(format: CodeFormat, seed: u64) -> String {
    const CROCKFORD: &[u8] = b"0123456789ABCDEFGHJKMNPQRSTVWXYZ";
    let mut x = seed;
    match format {
        CodeFormat::Numeric { digits } => (0..digits)
            .map(|_| {
                let d = (x % 10) as u8;
                x /= 10;
                char::from(b'0' + d)
            })
            .collect(),
        CodeFormat::Crockford { length } => (0..length)
            .map(|_| {
                let c = CROCKFORD[(x % 32) as usize];
                x /= 32;
                char::from(c)
            })
            .collect(),
    }
}

fn settings(format: CodeFormat) -> DeliverySettings {
    DeliverySettings {
        format,
        hash_bits: 12,
        max_attempts: 100,
        ..DeliverySettings::default()
    }
}

fn issued_receipt(delivery: &str) -> (Backend, DeviceKey, String) {
    let b = backend();
    let issued = b
        .issue(delivery, 0, "courier-1", NOW, &DeliverySettings::default())
        .unwrap();
    let key = b.provision_device("courier-1", "phone-1").unwrap();
    let v = OfflineVerifier::new(issued.ticket.clone(), Arc::new(InMemoryStateStore::new()));
    v.verify(issued.code.as_str(), NOW + 1).unwrap();
    let receipt = v
        .receipt(
            &key,
            Handover::DeliveredOffline {
                code: Zeroizing::new(issued.code.as_str().into()),
            },
            NOW + 2,
            ReceiptDetails {
                app_version: "android/3.4.1".into(),
                ..ReceiptDetails::default()
            },
        )
        .unwrap();
    (b, key, receipt.to_json().to_string())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// An issued code verifies online; any other code of the format never does.
    #[test]
    fn the_issued_code_verifies_and_no_other(
        format in format_strategy(), delivery in delivery_id(), seq in 0u64..1000, seed: u64,
    ) {
        let b = backend();
        let issued = b.issue(&delivery, seq, "courier-1", NOW, &settings(format)).unwrap();
        let other = some_code(format, seed);
        let check = |code: &str, at| b.verify_online(&issued.ticket, code, "courier-1", "phone-1", at);
        let outcome = check(&other, NOW + 1).unwrap();
        if other == issued.code.as_str() {
            prop_assert!(matches!(outcome, OnlineOutcome::Confirmed { .. }), "{:?}", outcome);
        } else {
            // A wrong code that matches the ticket's hash (1 in 4096) ends the code.
            let right = check(issued.code.as_str(), NOW + 2).unwrap();
            match outcome {
                OnlineOutcome::Rejected { .. } => prop_assert!(
                    matches!(right, OnlineOutcome::Confirmed { attempts_used: 2 }), "{:?}", right),
                OnlineOutcome::GuessedFromTicket => prop_assert_eq!(right, OnlineOutcome::Ended),
                other => prop_assert!(false, "{:?}", other),
            }
        }
    }

    /// Changing any one byte of a ticket is caught: it no longer reads, or
    /// the backend's MAC check fails.
    #[test]
    fn every_single_byte_change_to_a_ticket_is_refused(
        delivery in delivery_id(), position: prop::sample::Index, byte: u8,
    ) {
        let b = backend();
        let json = b.issue(&delivery, 0, "courier-1", NOW, &DeliverySettings::default()).unwrap().ticket.to_json();
        let mut bytes = json.clone().into_bytes();
        let i = position.index(bytes.len());
        prop_assume!(bytes[i] != byte);
        bytes[i] = byte;
        if let Ok(text) = String::from_utf8(bytes) {
            prop_assert!(b.read_ticket(&text).is_err(), "accepted: {}", text);
        }
    }

    /// Changing any one byte of a receipt is caught: it no longer reads, or
    /// its MAC fails with the device key.
    #[test]
    fn every_single_byte_change_to_a_receipt_is_refused(
        delivery in delivery_id(), position: prop::sample::Index, byte: u8,
    ) {
        let (_, key, json) = issued_receipt(&delivery);
        let mut bytes = json.into_bytes();
        let i = position.index(bytes.len());
        prop_assume!(bytes[i] != byte);
        bytes[i] = byte;
        if let Ok(text) = String::from_utf8(bytes) {
            let checked = Receipt::from_json(&text).and_then(|r| r.verify_mac(&key));
            prop_assert!(checked.is_err(), "accepted: {}", text);
        }
    }

    /// However verifications and app restarts interleave, no more codes are
    /// compared than the ticket allows.
    #[test]
    fn attempts_never_exceed_the_limit(
        max in 1u32..8,
        steps in prop::collection::vec((any::<bool>(), 0u8..3), 1..40),
    ) {
        let b = backend();
        let s = DeliverySettings { max_attempts: i32::try_from(max).unwrap(), ..DeliverySettings::default() };
        let issued = b.issue("PKG-P", 0, "courier-1", NOW, &s).unwrap();
        let store: Arc<dyn StateStore> = Arc::new(InMemoryStateStore::new());
        let mut verifier = OfflineVerifier::new(issued.ticket.clone(), store.clone());
        let wrong = some_code(CodeFormat::Numeric { digits: 6 }, 0);
        let mut compared = 0u32;
        for (i, (restart, what)) in steps.into_iter().enumerate() {
            if restart {
                verifier = OfflineVerifier::new(issued.ticket.clone(), store.clone());
            }
            let entered = match what {
                0 => issued.code.as_str().to_string(),
                1 => wrong.clone(),
                _ => "12x".to_string(), // unreadable: never counted
            };
            let left_before = verifier.attempts_left().unwrap();
            match verifier.verify(&entered, NOW + 1 + i as u64) {
                Ok(OfflineOutcome::AcceptedProvisionally { attempts_used }) => {
                    compared += 1;
                    prop_assert!(u32::try_from(attempts_used).unwrap() <= max);
                }
                Ok(OfflineOutcome::Rejected { attempts_left }) => {
                    compared += 1;
                    prop_assert!(u32::try_from(attempts_left).unwrap() < max);
                }
                // The last allowed wrong attempt is compared, then reported
                // as the lockout it causes.
                Ok(OfflineOutcome::LockedOut { .. }) if left_before > 0 => compared += 1,
                Ok(OfflineOutcome::LockedOut { .. }) => {}
                Ok(other) => prop_assert!(false, "{:?}", other),
                Err(e) => prop_assert_eq!(e.kind(), "invalid_code_character"),
            }
        }
        prop_assert!(compared <= max, "{} compared, {} allowed", compared, max);
        prop_assert_eq!(verifier.attempts_left().unwrap(), max - compared);
    }

    /// Writing then reading gives the same value: URIs, tickets, receipts.
    #[test]
    fn round_trips(
        secret in prop::collection::vec(any::<u8>(), 16..64),
        account in "[a-z0-9.@-]([a-z0-9.@ -]{0,18}[a-z0-9.@-])?",
        issuer in proptest::option::of("[A-Za-z0-9&-]([A-Za-z0-9 &-]{0,18}[A-Za-z0-9&-])?"),
        digits in 6u32..=10,
        hotp: bool,
        n in 1u64..1_000_000,
        algorithm in prop_oneof![Just(Algorithm::Sha1), Just(Algorithm::Sha256), Just(Algorithm::Sha512)],
        delivery in delivery_id(),
        format in format_strategy(),
    ) {
        let key = KeyUri {
            kind: if hotp { OtpKind::Hotp { counter: delivery_otp::Counter(n) } } else { OtpKind::Totp { period: std::time::Duration::from_secs(n) } },
            secret: Secret::from_bytes(&secret).unwrap(),
            issuer,
            account,
            algorithm,
            digits,
        };
        let uri = key.to_uri().unwrap();
        prop_assert_eq!(KeyUri::parse(&uri).unwrap(), key);

        let b = backend();
        let ticket = b.issue(&delivery, n, "courier-1", NOW, &settings(format)).unwrap().ticket;
        prop_assert_eq!(Ticket::from_json(&ticket.to_json()).unwrap(), ticket.clone());

        let (_, _, json) = issued_receipt(&delivery);
        let receipt = Receipt::from_json(&json).unwrap();
        let written = receipt.to_json();
        prop_assert_eq!(written.as_str(), json.as_str());
    }
}
