//! Tickets as the phone receives them: any text either reads or gets a typed
//! error; what reads writes back to the same value, and the offline verifier
//! built on it answers every entry without panicking.
#![no_main]

use std::sync::{Arc, OnceLock};

use delivery_otp::{
    Backend, InMemoryAttemptStore, InMemoryStateStore, KeySet, OfflineVerifier, Ticket,
};
use libfuzzer_sys::fuzz_target;

/// The vectors' keys, read once; each input gets a fresh backend and store.
fn backend() -> Backend {
    static KEYS: OnceLock<KeySet> = OnceLock::new();
    let keys = KEYS.get_or_init(|| {
        let vectors: serde_json::Value =
            serde_json::from_str(include_str!("../../tests/vectors/delivery-tickets.json"))
                .unwrap();
        KeySet::from_json(vectors["key_set"].as_str().unwrap()).unwrap()
    });
    Backend::new(keys.clone(), Arc::new(InMemoryAttemptStore::new()))
}

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    // The backend reads it too: the MAC decides, never a panic.
    let from_backend = backend().read_ticket(&text);
    let Ok(ticket) = Ticket::from_json(&text) else {
        assert!(from_backend.is_err());
        return;
    };
    let back = Ticket::from_json(&ticket.to_json()).expect("our own ticket reads back");
    assert_eq!(back, ticket);
    if let Ok(checked) = from_backend {
        assert_eq!(checked, ticket);
    }
    let verifier = OfflineVerifier::new(ticket.clone(), Arc::new(InMemoryStateStore::new()));
    let left = verifier
        .attempts_left()
        .expect("a fresh state has attempts");
    assert_eq!(left, ticket.max_attempts());
    for (entered, now) in [
        ("123456", ticket.not_before()),
        ("0000 0000", ticket.expires_at().saturating_sub(1)),
        ("ABCD-EFGH", ticket.not_before().saturating_add(1)),
    ] {
        let _ = verifier.verify(entered, now);
    }
});
