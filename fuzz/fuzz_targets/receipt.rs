//! Receipts as they arrive from phones: any text either reads or gets a typed
//! error. A receipt that reads is exactly the one form we write (no byte can
//! change unnoticed), and reconciling any text gives a decision or a typed
//! error, never a panic; the same receipt again gets the same decision, and
//! a confirmation is never given twice as new.
#![no_main]

use std::sync::{Arc, OnceLock};

use delivery_otp::{Backend, InMemoryAttemptStore, KeySet, Receipt, Ticket};
use libfuzzer_sys::fuzz_target;

/// The vectors' keys and ticket, read once; each input gets a fresh backend
/// and store.
fn backend() -> (Backend, Ticket) {
    static KEYS: OnceLock<(KeySet, Ticket)> = OnceLock::new();
    let (keys, ticket) = KEYS.get_or_init(|| {
        let vectors: serde_json::Value =
            serde_json::from_str(include_str!("../../tests/vectors/delivery-receipts.json"))
                .unwrap();
        (
            KeySet::from_json(vectors["key_set"].as_str().unwrap()).unwrap(),
            Ticket::from_json(vectors["ticket"].as_str().unwrap()).unwrap(),
        )
    });
    (
        Backend::new(keys.clone(), Arc::new(InMemoryAttemptStore::new())),
        ticket.clone(),
    )
}

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let parsed = Receipt::from_json(&text);
    if let Ok(receipt) = &parsed {
        assert_eq!(
            receipt.to_json().as_str(),
            &*text,
            "only the canonical form reads"
        );
    }
    let (b, ticket) = backend();
    let first = b.reconcile(&text, &ticket, 1_764_000_500);
    let for_ticket = parsed
        .as_ref()
        .is_ok_and(|r| r.delivery_id() == ticket.delivery_id());
    assert_eq!(first.is_ok(), for_ticket);
    if let Ok(first) = first {
        // The same bytes again get the same decision, never a second new
        // confirmation.
        let again = b
            .reconcile(&text, &ticket, 1_764_000_500)
            .expect("it read the first time");
        assert_eq!(again.decision, first.decision);
        if first.decision.kind() == "confirmed" {
            assert!(again.repeated, "{first:?} then {again:?}");
        }
    }
});
