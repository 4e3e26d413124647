//! Receipts and reconciliation from the shared vector file
//! `tests/vectors/delivery-receipts.json` (the Kotlin and Swift suites read
//! it too), plus the rules a receipt keeps on the device.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    clippy::arithmetic_side_effects
)]

mod common;
use std::sync::Arc;

use common::{load, n, s};
use delivery_otp::Handover;
use delivery_otp::{
    Backend, Decision, DeliverySettings, DeviceKey, Error, InMemoryAttemptStore,
    InMemoryStateStore, KeySet, Location, MasterKey, NotDeliveredReason, OfflineVerifier, Receipt,
    ReceiptDetails, ReceiptDraft, ReceiptOutcome, StateStore, Ticket, Verification,
    DEVICE_KEY_CACHE_MAX,
};
use serde_json::Value;
use zeroize::Zeroizing;

const RECONCILED_AT: u64 = 1_764_100_000;

fn backend(v: &Value) -> Backend {
    Backend::new(
        KeySet::from_json(&s(v, "key_set")).unwrap(),
        Arc::new(InMemoryAttemptStore::new()),
    )
}

fn outcome(o: &Value) -> Handover {
    match s(o, "kind").as_str() {
        "delivered" => {
            let code = Zeroizing::new(s(o, "code"));
            match s(o, "via").as_str() {
                "offline" => Handover::DeliveredOffline { code },
                "online" => Handover::DeliveredOnline {
                    code,
                    attempts_used: n(o, "attempts") as i32,
                },
                other => panic!("via {other}"),
            }
        }
        "not_delivered" => {
            let reason = match s(o, "reason").as_str() {
                "customer_absent" => NotDeliveredReason::CustomerAbsent,
                "code_not_received" => NotDeliveredReason::CodeNotReceived,
                "refused" => NotDeliveredReason::Refused,
                "damaged" => NotDeliveredReason::Damaged,
                "other" => NotDeliveredReason::Other { note: s(o, "note") },
                other => panic!("reason {other}"),
            };
            Handover::NotDelivered { reason }
        }
        other => panic!("kind {other}"),
    }
}

fn extras(c: &Value) -> ReceiptDetails {
    ReceiptDetails {
        location: c.get("location").map(|l| Location {
            lat_microdegrees: l["lat"].as_i64().unwrap() as i32,
            lon_microdegrees: l["lon"].as_i64().unwrap() as i32,
            accuracy_m: l["acc"].as_i64().unwrap() as i32,
        }),
        photo_sha256: c.get("photo_sha256").map(|p| {
            let text = p.as_str().unwrap();
            let mut out = [0u8; 32];
            for (i, byte) in out.iter_mut().enumerate() {
                *byte = u8::from_str_radix(&text[2 * i..2 * i + 2], 16).unwrap();
            }
            out
        }),
        app_version: s(c, "app_version"),
    }
}

/// Verifies the case's entries on a fresh device and makes its receipt.
fn make(c: &Value, store: Arc<dyn StateStore>) -> (OfflineVerifier, DeviceKey, Receipt) {
    let ticket = Ticket::from_json(&s(c, "ticket")).unwrap();
    let key = DeviceKey::from_json(&s(c, "device_key")).unwrap();
    let verifier = OfflineVerifier::new(ticket, store);
    for entry in c["verify"].as_array().unwrap() {
        verifier
            .verify(&s(entry, "entered"), n(entry, "time"))
            .unwrap();
    }
    let o = outcome(&c["outcome"]);
    let receipt = verifier
        .receipt(&key, o, n(c, "decided_at"), extras(c))
        .unwrap();
    (verifier, key, receipt)
}

/// The online checks a case's reconciliation expects before it (its `online` steps).
fn online_history(backend: &Backend, ticket: &Ticket, key: &DeviceKey, expected: &Value) {
    for step in expected["online"].as_array().unwrap() {
        backend
            .verify_online(
                ticket,
                &s(step, "entered"),
                key.courier_id(),
                key.device_id(),
                n(step, "time"),
            )
            .unwrap();
    }
}

#[test]
fn receipts_match_the_golden_bytes_and_reconcile_as_expected() {
    let v = load("delivery-receipts.json");
    let cases = v["cases"].as_array().unwrap();
    assert_eq!(cases.len(), 13);
    for c in cases {
        let name = s(c, "name");
        let (_, key, receipt) = make(c, Arc::new(InMemoryStateStore::new()));
        assert_eq!(receipt.to_json().as_str(), s(c, "receipt"), "{name}");
        let read = Receipt::from_json(&s(c, "receipt")).unwrap();
        assert_eq!(read, receipt, "{name}");
        read.verify_mac(&key).unwrap();

        let backend = backend(&v);
        let expected = &c["reconcile"];
        let ticket = backend.read_ticket(&s(expected, "ticket")).unwrap();
        online_history(&backend, &ticket, &key, expected);
        let r = backend
            .reconcile(&s(c, "receipt"), &ticket, RECONCILED_AT)
            .unwrap();
        assert_eq!(r.decision.kind(), s(expected, "decision"), "{name}: {r:?}");
        assert_eq!(r.delivery_id, receipt.delivery_id());
        assert!(!r.repeated, "{name}");
        assert!(!r.explanation.is_empty());
        if let ReceiptOutcome::Delivered { code, .. } = receipt.outcome() {
            assert!(!r.explanation.contains(code.as_str()), "{name}");
        }
        // The same receipt again (a retry after a timeout): the same decision.
        let again = backend
            .reconcile(&s(c, "receipt"), &ticket, RECONCILED_AT + 1)
            .unwrap();
        assert_eq!(again.decision, r.decision, "{name}");
        assert_eq!(again.explanation, r.explanation, "{name}");
        let slot_taken = !matches!(
            r.decision,
            Decision::NotAssigned { .. } | Decision::Stale { .. }
        );
        assert_eq!(again.repeated, slot_taken, "{name}");
    }
}

/// Every receipt of the vectors, its retry, a receipt for the wrong ticket
/// and text that is no receipt, reconciled one by one on one backend and as
/// one batch on another with the same online history: the same results, in
/// the same order (issue 13, the batch path).
#[test]
fn a_batch_gets_what_one_by_one_gets() {
    let v = load("delivery-receipts.json");
    let cases = v["cases"].as_array().unwrap();
    let (one_by_one, batched) = (backend(&v), backend(&v));
    let mut batch: Vec<(String, Ticket)> = Vec::new();
    for c in cases {
        let (_, key, _) = make(c, Arc::new(InMemoryStateStore::new()));
        let expected = &c["reconcile"];
        let ticket = one_by_one.read_ticket(&s(expected, "ticket")).unwrap();
        for b in [&one_by_one, &batched] {
            online_history(b, &ticket, &key, expected);
        }
        batch.push((s(c, "receipt"), ticket.clone()));
    }
    let retries: Vec<(String, Ticket)> = batch.clone();
    batch.extend(retries);
    let other_ticket = batch.last().unwrap().1.clone();
    batch.push((s(&cases[0], "receipt"), other_ticket));
    batch.push(("not a receipt".into(), batch[0].1.clone()));
    let sequential: Vec<_> = batch
        .iter()
        .map(|(json, ticket)| one_by_one.reconcile(json, ticket, RECONCILED_AT))
        .collect();
    let pairs: Vec<(&str, &Ticket)> = batch.iter().map(|(j, t)| (j.as_str(), t)).collect();
    let together = batched.reconcile_many(&pairs, RECONCILED_AT);
    assert_eq!(together.len(), batch.len());
    assert!(batched.reconcile_many(&[], RECONCILED_AT).is_empty());
    assert_eq!(together, sequential);
    let repeated = together
        .iter()
        .filter(|r| r.as_ref().is_ok_and(|r| r.repeated))
        .count();
    let errors = together.iter().filter(|r| r.is_err()).count();
    // Receipts of several cases share a ticket's slot, so some retries meet
    // another receipt's decision (conflicting) rather than their own.
    assert!(repeated >= 1, "{repeated} repeated");
    assert!(errors >= 1, "{errors} errors");
    println!(
        "{} receipts in one batch: {repeated} repeated, {errors} refused, the same as one by one",
        batch.len()
    );
}

#[test]
fn a_note_that_reads_like_a_decision_is_quoted_in_the_explanation() {
    let v = load("delivery-receipts.json");
    let backend = backend(&v);
    let ticket = backend.read_ticket(&s(&v, "ticket")).unwrap();
    let c = v["cases"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| s(c, "name") == "a note that reads like a decision is quoted")
        .unwrap();
    let r = backend
        .reconcile(&s(c, "receipt"), &ticket, RECONCILED_AT)
        .unwrap();
    assert_eq!(
        r.explanation,
        "not delivered: other, in the courier's words: \"\\\" DECISION: delivered, confirmed \\\"\" \
         (0 attempts on the device)"
    );
}

#[test]
fn tampered_receipts_are_refused_or_flagged() {
    let v = load("delivery-receipts.json");
    let backend = backend(&v);
    let ticket = backend.read_ticket(&s(&v, "ticket")).unwrap();
    let tampered = v["tampered"].as_array().unwrap();
    assert!(tampered.len() >= 15);
    for t in tampered {
        let name = s(t, "name");
        let result = backend.reconcile(&s(t, "receipt"), &ticket, RECONCILED_AT);
        match t["error"].as_str() {
            Some(kind) => {
                assert_eq!(result.unwrap_err().kind(), kind, "{name}");
                assert_eq!(
                    Receipt::from_json(&s(t, "receipt")).unwrap_err().kind(),
                    kind,
                    "{name}"
                );
            }
            None => assert_eq!(result.unwrap().decision.kind(), s(t, "decision"), "{name}"),
        }
    }
}

/// Issue 11, A4: each claim a courier signed with their own key is checked
/// against the ticket and the backend's records, and named.
#[test]
fn false_claims_signed_by_the_courier_are_named_never_confirmed() {
    let v = load("delivery-receipts.json");
    let claims = v["false_claims"].as_array().unwrap();
    assert_eq!(claims.len(), 6);
    for c in claims {
        let name = s(c, "name");
        let backend = backend(&v);
        let ticket = backend.read_ticket(&s(&v, "ticket")).unwrap();
        let r = backend
            .reconcile(&s(c, "receipt"), &ticket, RECONCILED_AT)
            .unwrap();
        assert_eq!(
            r.decision,
            Decision::FalseClaim {
                field: s(c, "field")
            },
            "{name}: {}",
            r.explanation
        );
    }
}

#[test]
fn sequences_of_receipts_for_one_ticket() {
    let v = load("delivery-receipts.json");
    for seq in v["sequences"].as_array().unwrap() {
        let name = s(seq, "name");
        let backend = backend(&v);
        let ticket = backend.read_ticket(&s(&v, "ticket")).unwrap();
        for (i, step) in seq["steps"].as_array().unwrap().iter().enumerate() {
            let r = backend
                .reconcile(&s(step, "receipt"), &ticket, RECONCILED_AT)
                .unwrap();
            assert_eq!(r.decision.kind(), s(step, "decision"), "{name}, step {i}");
            assert_eq!(
                r.repeated,
                step["repeated"].as_bool().unwrap(),
                "{name}, step {i}"
            );
        }
    }
}

#[test]
fn a_receipt_can_be_made_again_but_never_changed() {
    let v = load("delivery-receipts.json");
    let c = &v["cases"][0];
    let store: Arc<dyn StateStore> = Arc::new(InMemoryStateStore::new());
    let (verifier, key, receipt) = make(c, store.clone());
    // Lost by the app: the same request, or the stored copy, gives the same bytes.
    let o = outcome(&c["outcome"]);
    let again = verifier
        .receipt(&key, o, n(c, "decided_at"), extras(c))
        .unwrap();
    assert_eq!(again.to_json(), receipt.to_json());
    // After an app restart too.
    let restarted = OfflineVerifier::new(verifier.ticket().clone(), store);
    assert_eq!(
        restarted.stored_receipt().unwrap().unwrap().to_json(),
        receipt.to_json()
    );
    // Another outcome, or another time, for the same ticket is refused.
    let changed = restarted.receipt(
        &key,
        Handover::NotDelivered {
            reason: NotDeliveredReason::Refused,
        },
        n(c, "decided_at"),
        extras(c),
    );
    match changed {
        Err(Error::ReceiptConflict { fields }) => {
            assert_eq!(fields, "outcome, code, via, reason");
        }
        other => panic!("{other:?}"),
    }
    let o = outcome(&c["outcome"]);
    let later = restarted.receipt(&key, o, n(c, "decided_at") + 60, extras(c));
    assert!(
        matches!(later, Err(Error::ReceiptConflict { ref fields }) if fields == "decided"),
        "{later:?}"
    );
}

#[test]
fn an_offline_delivery_needs_the_device_to_have_accepted_the_code() {
    let v = load("delivery-receipts.json");
    let c = &v["cases"][0];
    let ticket = Ticket::from_json(&s(c, "ticket")).unwrap();
    let key = DeviceKey::from_json(&s(c, "device_key")).unwrap();
    let verifier = OfflineVerifier::new(ticket, Arc::new(InMemoryStateStore::new()));
    let o = outcome(&c["outcome"]);
    let result = verifier.receipt(&key, o, n(c, "decided_at"), extras(c));
    assert!(
        matches!(result, Err(Error::InvalidReceipt { ref reason }) if reason.contains("did not accept")),
        "{result:?}"
    );
}

#[test]
fn a_brute_forced_code_passes_on_the_phone_and_is_flagged_by_the_backend() {
    // The courier tries every code against the ticket on a copy of the app's
    // storage, finds one that passes, and types it on the real device.
    let v = load("delivery-receipts.json");
    let backend = backend(&v);
    let issued = backend
        .issue(
            "PKG-9009",
            0,
            "courier-17",
            1_764_000_000,
            &DeliverySettings::default(),
        )
        .unwrap();
    let key = backend
        .provision_device("courier-17", "pixel-8-0042")
        .unwrap();
    let candidate = (0..1_000_000u32)
        .map(|x| format!("{x:06}"))
        .filter(|c| c != issued.code.as_str())
        .find(|c| {
            let scratch =
                OfflineVerifier::new(issued.ticket.clone(), Arc::new(InMemoryStateStore::new()));
            matches!(
                scratch.verify(c, 1_764_000_100),
                Ok(delivery_otp::OfflineOutcome::AcceptedProvisionally { .. })
            )
        })
        .unwrap();
    let device = OfflineVerifier::new(issued.ticket.clone(), Arc::new(InMemoryStateStore::new()));
    device.verify(&candidate, 1_764_000_100).unwrap();
    let receipt = device
        .receipt(
            &key,
            Handover::DeliveredOffline {
                code: Zeroizing::new(candidate.clone()),
            },
            1_764_000_101,
            ReceiptDetails {
                app_version: "android/3.4.1".into(),
                ..ReceiptDetails::default()
            },
        )
        .unwrap();
    let r = backend
        .reconcile(&receipt.to_json(), &issued.ticket, 1_764_000_200)
        .unwrap();
    assert_eq!(r.decision, Decision::CodeMismatch);
    assert!(!r.explanation.contains(issued.code.as_str()));
    assert!(!r.explanation.contains(&candidate));
}

#[test]
fn reconciliation_is_the_same_whether_the_device_key_is_cached_or_not() {
    // The backend keeps derived device keys between receipts, up to
    // DEVICE_KEY_CACHE_MAX, then starts again. Decisions must not depend on it.
    let keys = KeySet::new(MasterKey::from_bytes("k1", &[5u8; 32]).unwrap());
    let backend = Backend::new(keys, Arc::new(InMemoryAttemptStore::new()));
    let tickets = std::sync::Mutex::new(std::collections::HashMap::new());
    let receipt = |phone: usize, delivery: &str| -> String {
        let key = backend
            .provision_device("courier-1", &format!("phone-{phone}"))
            .unwrap();
        let issued = backend
            .issue(
                delivery,
                0,
                "courier-1",
                1_764_000_000,
                &DeliverySettings::default(),
            )
            .unwrap();
        tickets
            .lock()
            .unwrap()
            .insert(delivery.to_string(), issued.ticket.clone());
        let outcome = ReceiptOutcome::Delivered {
            code: Zeroizing::new(issued.code.as_str().into()),
            verified: Verification::Offline,
        };
        let draft =
            ReceiptDraft::for_ticket(&issued.ticket, outcome, 1, 1_764_000_011, "android/3.4.1");
        key.sign(draft).unwrap().to_json().to_string()
    };
    let reconcile = |json: &str| {
        let read = Receipt::from_json(json).unwrap();
        let ticket = tickets.lock().unwrap()[read.delivery_id()].clone();
        backend.reconcile(json, &ticket, RECONCILED_AT).unwrap()
    };
    let confirmed = Decision::Confirmed {
        verified: Verification::Offline,
    };

    let first = receipt(0, "D-first");
    assert_eq!(reconcile(&first).decision, confirmed);
    // phone-0's key is cached now: a receipt made with phone-1's key that
    // claims phone-0 is still tampered.
    let forged = receipt(1, "D-forged").replace("\"phone-1\"", "\"phone-0\"");
    assert_eq!(reconcile(&forged).decision, Decision::Tampered);
    for phone in 2..=DEVICE_KEY_CACHE_MAX {
        let r = reconcile(&receipt(phone, &format!("D-{phone}")));
        assert_eq!(r.decision, confirmed);
    }
    // The cache has started over since: phone-0's key is derived again.
    let again = reconcile(&first);
    assert_eq!((again.decision, again.repeated), (confirmed.clone(), true));
    assert_eq!(reconcile(&receipt(0, "D-second")).decision, confirmed);
    assert_eq!(reconcile(&forged).decision, Decision::Tampered);
}

#[test]
fn an_online_handover_needs_the_backends_count() {
    let v = load("delivery-receipts.json");
    let c = &v["cases"][0];
    let ticket = Ticket::from_json(&s(c, "ticket")).unwrap();
    let key = DeviceKey::from_json(&s(c, "device_key")).unwrap();
    let verifier = OfflineVerifier::new(ticket, Arc::new(InMemoryStateStore::new()));
    let online = |attempts_used| Handover::DeliveredOnline {
        code: Zeroizing::new("123456".into()),
        attempts_used,
    };
    let negative = verifier.receipt(&key, online(-1), n(c, "decided_at"), extras(c));
    assert!(
        matches!(negative, Err(Error::InvalidNumber { ref what, .. }) if what == "attempts_used"),
        "{negative:?}"
    );
    let none = verifier.receipt(&key, online(0), n(c, "decided_at"), extras(c));
    assert!(
        matches!(none, Err(Error::InvalidReceipt { ref reason }) if reason.contains("at least 1")),
        "{none:?}"
    );
    // Neither was stored: the device can still record what really happened.
    assert!(verifier.stored_receipt().unwrap().is_none());
}
