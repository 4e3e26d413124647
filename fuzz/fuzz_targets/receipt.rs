//! Receipts as they arrive from phones: any text either reads or gets a typed
//! error. A receipt that reads is exactly the one form we write (no byte can
//! change unnoticed), and reconciling any text gives a decision or a typed
//! error, never a panic.
#![no_main]

use std::sync::{Arc, OnceLock};

use delivery_otp::{Backend, InMemoryAttemptStore, KeySet, Receipt};
use libfuzzer_sys::fuzz_target;

/// The vectors' keys, read once; each input gets a fresh backend and store.
fn backend() -> Backend {
    static KEYS: OnceLock<KeySet> = OnceLock::new();
    let keys = KEYS.get_or_init(|| {
        let vectors: serde_json::Value =
            serde_json::from_str(include_str!("../../tests/vectors/delivery-receipts.json"))
                .unwrap();
        KeySet::from_json(vectors["key_set"].as_str().unwrap()).unwrap()
    });
    Backend::new(keys.clone(), Arc::new(InMemoryAttemptStore::new()))
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
    let b = backend();
    let first = b.reconcile(&text, 0, 1_764_000_500);
    assert_eq!(first.is_ok(), parsed.is_ok());
    if let Ok(first) = first {
        // The same bytes again are never a second confirmation.
        let again = b
            .reconcile(&text, 0, 1_764_000_500)
            .expect("it read the first time");
        assert_ne!(
            again.decision.kind(),
            "confirmed",
            "{first:?} then {again:?}"
        );
    }
});
