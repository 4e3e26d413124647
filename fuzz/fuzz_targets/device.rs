//! The courier's phone, driven by any sequence of entries, clock readings and
//! app restarts. Whatever the sequence:
//! - no more than `max_attempts` codes are ever compared with the ticket;
//! - each call uses at most one attempt, and `attempts_left` is exact;
//! - the right code, typed inside the validity period while attempts are
//!   left and the clock has not gone back, is accepted.
#![no_main]

use std::sync::Arc;

use delivery_otp::{
    Backend, DeliverySettings, InMemoryAttemptStore, InMemoryStateStore, KeySet, MasterKey,
    OfflineOutcome, OfflineVerifier,
};
use libfuzzer_sys::fuzz_target;

const NOW: u64 = 1_764_000_000;

fuzz_target!(|data: &[u8]| {
    let keys = KeySet::new(MasterKey::from_bytes("fuzz", &[9u8; 32]).unwrap());
    let backend = Backend::new(keys, Arc::new(InMemoryAttemptStore::new()));
    let settings = DeliverySettings::default();
    let issued = backend
        .issue("PKG-FUZZ", 0, "courier-1", NOW, &settings)
        .unwrap();
    let ticket = issued.ticket;
    let right = issued.code.as_str().to_string();
    let store = Arc::new(InMemoryStateStore::new());
    let mut verifier = OfflineVerifier::new(ticket.clone(), store.clone());
    let max = ticket.max_attempts();
    let mut used = 0u32;
    let mut latest = 0u64;
    let mut now = NOW;
    let mut bytes = data.iter().copied();
    while let Some(op) = bytes.next() {
        let arg = bytes.next().unwrap_or(0);
        match op % 6 {
            0 => verifier = OfflineVerifier::new(ticket.clone(), store.clone()),
            1 => now = now.saturating_add(u64::from(arg) * 7),
            2 => now = now.saturating_sub(u64::from(arg) * 11),
            3 => now = NOW.saturating_add(u64::from(arg) * 60),
            _ => {
                let entered = if op % 6 == 4 {
                    right.clone()
                } else {
                    let len = usize::from(arg % 12);
                    let typed: Vec<u8> = bytes.by_ref().take(len).collect();
                    String::from_utf8_lossy(&typed).into_owned()
                };
                let before = verifier.attempts_left().unwrap();
                assert_eq!(before, max - used);
                let clock_ok = now + 300 >= latest;
                let outcome = verifier.verify(&entered, now);
                let after = verifier.attempts_left().unwrap();
                assert!(
                    after == before || after + 1 == before,
                    "{before} -> {after}"
                );
                used += before - after;
                assert!(used <= max);
                if clock_ok {
                    latest = latest.max(now);
                }
                let valid = now >= ticket.not_before() && now < ticket.expires_at();
                if entered == right && valid && before > 0 && clock_ok {
                    assert_eq!(
                        outcome,
                        Ok(OfflineOutcome::AcceptedProvisionally {
                            attempts_used: i32::try_from(used).unwrap()
                        })
                    );
                }
            }
        }
    }
});
