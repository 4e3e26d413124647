//! Runs every case of the shared delivery vector files (codes, tickets,
//! normalization, scenarios), the same files the Kotlin and Swift suites read.
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
use delivery_otp::delivery::code::derive_code;
use delivery_otp::{
    normalize, Backend, CodeFormat, DeliverySettings, Error, InMemoryAttemptStore,
    InMemoryStateStore, KeySet, OfflineOutcome, OfflineVerifier, OnlineOutcome, StateStore, Ticket,
};
use serde_json::Value;

fn base32_of(bytes: &[u8]) -> String {
    delivery_otp::Secret::from_bytes(bytes)
        .unwrap()
        .to_base32()
        .to_string()
}

fn hex(text: &str) -> Vec<u8> {
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&text[i..i + 2], 16).unwrap())
        .collect()
}

#[test]
fn codes() {
    let v = load("delivery-codes.json");
    let keys = KeySet::from_json(&s(&v, "key_set")).unwrap();
    let cases = v["cases"].as_array().unwrap();
    assert_eq!(cases.len(), 24);
    for c in cases {
        let name = s(c, "name");
        let format: CodeFormat = s(c, "format").parse().unwrap();
        let key = keys.get(&s(c, "key_id")).unwrap();
        let code = derive_code(key, &s(c, "delivery_id"), n(c, "sequence"), format).unwrap();
        let b = Backend::new(keys.clone(), Arc::new(InMemoryAttemptStore::new()));
        let again = b
            .derive_code(
                &s(c, "key_id"),
                &s(c, "delivery_id"),
                n(c, "sequence"),
                format,
            )
            .unwrap();
        assert_eq!(again, code, "{name}");
        assert_eq!(code.as_str(), s(c, "code"), "{name}");
        assert_eq!(code.grouped(), s(c, "grouped"), "{name}");
    }
}

fn settings(v: &Value) -> DeliverySettings {
    DeliverySettings {
        format: s(v, "format").parse().unwrap(),
        allow_short_codes: v["allow_short_codes"].as_bool().unwrap(),
        hash_bits: i32::try_from(n(v, "hash_bits")).unwrap(),
        max_attempts: i32::try_from(n(v, "max_attempts")).unwrap(),
        lifetime: std::time::Duration::from_secs(n(v, "lifetime_secs")),
    }
}

fn backend(key_set: &str, current: &str) -> Backend {
    let mut keys = KeySet::from_json(key_set).unwrap();
    keys.set_current(current).unwrap();
    Backend::new(keys, Arc::new(InMemoryAttemptStore::new()))
}

#[test]
fn tickets_are_byte_exact_and_tampering_is_caught() {
    let v = load("delivery-tickets.json");
    let key_set = s(&v, "key_set");
    let cases = v["cases"].as_array().unwrap();
    assert_eq!(cases.len(), 8);
    for c in cases {
        let name = s(c, "name");
        let b = backend(&key_set, &s(c, "key_id"));
        let issued = b
            .issue(
                &s(c, "delivery_id"),
                n(c, "sequence"),
                &s(c, "courier_id"),
                n(c, "now"),
                &settings(&c["settings"]),
            )
            .unwrap();
        let hash_key = hex(&s(c, "hash_key_hex"));
        assert!(
            issued.ticket.to_json().contains(&base32_of(&hash_key)),
            "{name}: hash key"
        );
        assert_eq!(issued.code.as_str(), s(c, "code"), "{name}");
        assert_eq!(issued.ticket.to_json(), s(c, "ticket"), "{name}");
        let read = b.read_ticket(&s(c, "ticket")).unwrap();
        assert_eq!(read, issued.ticket, "{name}");
        assert_eq!(b.code_for(&read).unwrap().as_str(), s(c, "code"), "{name}");
        // Nothing on the device side shows the code.
        let device_view = format!("{} {read:?}", read.to_json());
        assert!(
            !device_view.contains(&s(c, "code")),
            "{name}: ticket shows the code"
        );
    }
    let b = backend(&key_set, "k-2026-11");
    let tampered = v["tampered"].as_array().unwrap();
    assert!(tampered.len() >= 10);
    for c in tampered {
        let name = s(c, "name");
        let text = s(c, "ticket");
        match (Ticket::from_json(&text), c["device_error"].as_str()) {
            (Ok(_), None) => {}
            (Err(e), Some(kind)) => assert_eq!(e.kind(), kind, "{name}: {e}"),
            (other, expected) => panic!("{name}: device got {other:?}, expected {expected:?}"),
        }
        let err = b.read_ticket(&text).unwrap_err();
        assert_eq!(err.kind(), s(c, "backend_error"), "{name}: {err}");
    }
}

/// A ticket is checked once per key: the backend that made it (or read
/// it) does not compute its MAC again, but another backend whose key has
/// the same id and other bytes still refuses it, one without its key does
/// not know it, and a copy read from its text is checked in full. Whether
/// checked or not, a ticket equals the same ticket read from its text.
#[test]
fn a_ticket_is_trusted_without_a_second_check_only_by_its_own_key() {
    let store = || -> Arc<dyn delivery_otp::AttemptStore> { Arc::new(InMemoryAttemptStore::new()) };
    let issuer = Backend::new(KeySet::generate("k1").unwrap(), store());
    let issued = issuer
        .issue("D-1", 0, "courier-1", 1_000, &DeliverySettings::default())
        .unwrap();
    issuer.code_for(&issued.ticket).unwrap();
    let read = issuer.read_ticket(&issued.ticket.to_json()).unwrap();
    assert_eq!(read, issued.ticket);
    assert_eq!(
        Ticket::from_json(&issued.ticket.to_json()).unwrap(),
        issued.ticket
    );
    // Another key under the same id: the issued and the read tickets are
    // checked again, and refused.
    let impostor = Backend::new(KeySet::generate("k1").unwrap(), store());
    for ticket in [&issued.ticket, &read] {
        assert_eq!(
            impostor.code_for(ticket).unwrap_err().kind(),
            "ticket_mac_mismatch"
        );
        assert!(matches!(
            ticket.verify_mac(impostor.keys()),
            Err(Error::TicketMacMismatch)
        ));
    }
    // The key gone from the set: unknown, checked or not.
    let mut keys = issuer.keys().clone();
    keys.rotate("k2").unwrap();
    keys.remove("k1").unwrap();
    let rotated = Backend::new(keys, store());
    assert_eq!(
        rotated.code_for(&issued.ticket).unwrap_err().kind(),
        "unknown_key_id"
    );
    // The same key in a copy of the set still trusts what it checked.
    let copy = Backend::new(issuer.keys().clone(), store());
    assert_eq!(copy.code_for(&read).unwrap().as_str(), issued.code.as_str());
}

#[test]
fn normalization() {
    let v = load("delivery-normalize.json");
    let cases = v["cases"].as_array().unwrap();
    assert!(cases.len() >= 25);
    for c in cases {
        let name = s(c, "name");
        let format: CodeFormat = s(c, "format").parse().unwrap();
        let result = normalize(&s(c, "entered"), format);
        match c.get("normalized") {
            Some(expected) => {
                assert_eq!(
                    result.unwrap().as_str(),
                    expected.as_str().unwrap(),
                    "{name}"
                )
            }
            None => {
                let err = result.unwrap_err();
                assert_eq!(err.kind(), s(c, "error"), "{name}");
                match err {
                    Error::InvalidCodeCharacter { position } => {
                        assert_eq!(position, i64::try_from(n(c, "position")).unwrap(), "{name}")
                    }
                    Error::WrongCodeLength { found, .. } => {
                        assert_eq!(found, i64::try_from(n(c, "found")).unwrap(), "{name}")
                    }
                    _ => {}
                }
            }
        }
    }
}

fn offline_name(o: &OfflineOutcome) -> &'static str {
    match o {
        OfflineOutcome::AcceptedProvisionally { .. } => "accepted_provisionally",
        OfflineOutcome::Rejected { .. } => "rejected",
        OfflineOutcome::LockedOut { .. } => "locked_out",
        OfflineOutcome::Expired { .. } => "expired",
        OfflineOutcome::NotYetValid { .. } => "not_yet_valid",
        OfflineOutcome::ClockMovedBackwards { .. } => "clock_moved_backwards",
        OfflineOutcome::Superseded { .. } => "superseded",
    }
}

fn check_offline(o: &OfflineOutcome, step: &Value, ctx: &str) {
    assert_eq!(offline_name(o), s(step, "expect"), "{ctx}: {o:?}");
    let (field, value) = match *o {
        OfflineOutcome::AcceptedProvisionally { attempts_used } => {
            ("attempts_used", u64::try_from(attempts_used).unwrap())
        }
        OfflineOutcome::Rejected { attempts_left } => {
            ("attempts_left", u64::try_from(attempts_left).unwrap())
        }
        OfflineOutcome::LockedOut { until } => ("until", until.secs()),
        OfflineOutcome::Expired { at } => ("at", at.secs()),
        OfflineOutcome::NotYetValid { from } => ("from", from.secs()),
        OfflineOutcome::ClockMovedBackwards { latest_seen } => ("latest_seen", latest_seen.secs()),
        OfflineOutcome::Superseded { by_sequence } => {
            ("by_sequence", u64::try_from(by_sequence).unwrap())
        }
    };
    assert_eq!(value, n(step, field), "{ctx}: {field}");
}

fn check_online(o: &OnlineOutcome, step: &Value, ctx: &str) {
    let (name, field) = match *o {
        OnlineOutcome::Confirmed { attempts_used } => (
            "confirmed",
            Some(("attempts_used", u64::try_from(attempts_used).unwrap())),
        ),
        OnlineOutcome::Rejected { attempts_left } => (
            "rejected",
            Some(("attempts_left", u64::try_from(attempts_left).unwrap())),
        ),
        OnlineOutcome::LockedOut { until } => ("locked_out", Some(("until", until.secs()))),
        OnlineOutcome::AlreadyUsed => ("already_used", None),
        OnlineOutcome::GuessedFromTicket => ("guessed_from_ticket", None),
        OnlineOutcome::Ended => ("ended", None),
        OnlineOutcome::NotAssigned => ("not_assigned", None),
        OnlineOutcome::Expired { at } => ("expired", Some(("at", at.secs()))),
        OnlineOutcome::NotYetValid { from } => ("not_yet_valid", Some(("from", from.secs()))),
    };
    assert_eq!(name, s(step, "expect"), "{ctx}: {o:?}");
    if let Some((field, value)) = field {
        assert_eq!(value, n(step, field), "{ctx}: {field}");
    }
}

#[test]
fn scenarios() {
    let v = load("delivery-scenarios.json");
    let b = |_: ()| backend(&s(&v, "key_set"), "k-2026-11");
    let tolerance = n(&v, "clock_tolerance_secs");
    let scenarios = v["scenarios"].as_array().unwrap();
    assert!(scenarios.len() >= 12);
    for scenario in scenarios {
        let name = s(scenario, "name");
        let store: Arc<dyn StateStore> = Arc::new(InMemoryStateStore::new());
        let backend = b(());
        let mut ticket = Ticket::from_json(&s(scenario, "ticket")).unwrap();
        let open = |t: &Ticket| {
            OfflineVerifier::new(t.clone(), store.clone()).with_clock_tolerance(tolerance)
        };
        let mut verifier = open(&ticket);
        for (i, step) in scenario["steps"].as_array().unwrap().iter().enumerate() {
            let ctx = format!("{name}, step {}", i + 1);
            match s(step, "do").as_str() {
                "verify" => {
                    let result = verifier.verify(&s(step, "entered"), n(step, "time"));
                    match step.get("expect_error") {
                        Some(kind) => {
                            assert_eq!(result.unwrap_err().kind(), kind.as_str().unwrap(), "{ctx}")
                        }
                        None => check_offline(&result.unwrap(), step, &ctx),
                    }
                }
                // A new verifier over the same storage: an app restart.
                "restart" => verifier = open(&ticket),
                "switch_ticket" => {
                    ticket = Ticket::from_json(&s(step, "ticket")).unwrap();
                    verifier = open(&ticket);
                }
                "attempts_left" => {
                    assert_eq!(
                        u64::from(verifier.attempts_left().unwrap()),
                        n(step, "expect"),
                        "{ctx}"
                    )
                }
                "online" => {
                    let outcome = backend
                        .verify_online(
                            &ticket,
                            &s(step, "entered"),
                            &s(step, "courier"),
                            &s(step, "device"),
                            n(step, "time"),
                        )
                        .unwrap();
                    check_online(&outcome, step, &ctx);
                }
                other => panic!("{ctx}: unknown step {other}"),
            }
        }
    }
}

/// Issue 11, B6, in Rust: 16 verifier objects on 16 threads share one
/// store, as a screen, a background job and a double tap would; each sends
/// 4 wrong codes to each of 30 tickets. However the calls interleave, each
/// count from 4 down to 1 is given exactly once (no attempt is counted
/// twice or lost), every other call is locked out, and the right code
/// afterwards is locked out too: no ticket had more than 5 codes compared.
#[test]
fn many_verifiers_on_one_store_never_exceed_the_limit() {
    let keys = KeySet::generate("k1").unwrap();
    let backend = Backend::new(keys, Arc::new(InMemoryAttemptStore::new()));
    let store = Arc::new(InMemoryStateStore::new());
    let settings = DeliverySettings::default();
    for t in 0..30 {
        let issued = backend
            .issue(&format!("PKG-many-{t}"), 0, "courier-1", 1_000, &settings)
            .unwrap();
        // Wrong codes that do not match the hash, so each is a plain rejection.
        let wrong: Vec<String> = (0..1_000_000u32)
            .map(|c| format!("{c:06}"))
            .filter(|c| c.as_str() != issued.code.as_str() && !issued.ticket.hash_matches(c))
            .take(64)
            .collect();
        let outcomes: Vec<OfflineOutcome> = std::thread::scope(|scope| {
            let handles: Vec<_> = (0..16)
                .map(|v| {
                    let (ticket, store, wrong) = (issued.ticket.clone(), store.clone(), &wrong);
                    scope.spawn(move || {
                        let verifier = OfflineVerifier::new(ticket, store);
                        (0..4)
                            .map(|i| verifier.verify(&wrong[v * 4 + i], 1_001).unwrap())
                            .collect::<Vec<_>>()
                    })
                })
                .collect();
            handles
                .into_iter()
                .flat_map(|h| h.join().unwrap())
                .collect()
        });
        let mut left: Vec<i32> = outcomes
            .iter()
            .filter_map(|o| match o {
                OfflineOutcome::Rejected { attempts_left } => Some(*attempts_left),
                _ => None,
            })
            .collect();
        left.sort_unstable();
        assert_eq!(left, [1, 2, 3, 4], "ticket {t}: {outcomes:?}");
        let locked = outcomes
            .iter()
            .filter(|o| matches!(o, OfflineOutcome::LockedOut { .. }))
            .count();
        assert_eq!(locked, 60, "ticket {t}");
        let verifier = OfflineVerifier::new(issued.ticket.clone(), store.clone());
        assert_eq!(verifier.attempts_left().unwrap(), 0, "ticket {t}");
        assert!(matches!(
            verifier.verify(issued.code.as_str(), 1_002).unwrap(),
            OfflineOutcome::LockedOut { .. }
        ));
    }
}

/// Sequences end at 2^63 - 1, what Kotlin's Long, Swift's Int64 and bigint
/// hold: a resend at the last one overflows, and a ticket edited to carry a
/// larger one is refused as it is read (before any MAC check).
#[test]
fn sequences_past_two_to_the_63_are_refused_everywhere() {
    use delivery_otp::delivery::code::MAX_SEQUENCE;
    let backend = Backend::new(
        KeySet::generate("k1").unwrap(),
        Arc::new(InMemoryAttemptStore::new()),
    );
    let settings = DeliverySettings::default();
    let last = backend
        .issue("PKG-MAX", MAX_SEQUENCE, "courier-1", 1_000, &settings)
        .unwrap();
    assert_eq!(last.ticket.sequence(), MAX_SEQUENCE);
    let err = backend.resend(&last.ticket, 2_000, &settings).unwrap_err();
    assert_eq!(err.kind(), "overflow");
    let err = backend
        .issue("PKG-MAX", MAX_SEQUENCE + 1, "courier-1", 1_000, &settings)
        .unwrap_err();
    assert_eq!(err.kind(), "invalid_number");
    let json = last.ticket.to_json();
    let edited = json.replace(
        &format!("\"seq\":{MAX_SEQUENCE}"),
        &format!("\"seq\":{}", MAX_SEQUENCE + 1),
    );
    assert_ne!(edited, json);
    let err = Ticket::from_json(&edited).unwrap_err();
    assert_eq!(err.kind(), "invalid_ticket", "{err}");
}
