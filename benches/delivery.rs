//! Issuing (code plus ticket) on the backend, verifying on the device and
//! online, and an RFC 6238 TOTP for scale. `cargo bench --bench delivery`.
#![allow(
    missing_docs,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::arithmetic_side_effects
)]

use std::hint::black_box;
use std::sync::Arc;

use criterion::{criterion_group, criterion_main, Criterion};
use delivery_otp::{
    Backend, DeliverySettings, InMemoryAttemptStore, InMemoryStateStore, KeySet, MasterKey,
    OfflineVerifier, Secret, Ticket, Totp, TotpConfig,
};

const NOW: u64 = 1_764_000_000;

fn backend() -> Backend {
    let keys = KeySet::new(MasterKey::from_bytes("bench", &[42u8; 32]).unwrap());
    Backend::new(keys, Arc::new(InMemoryAttemptStore::new()))
}

fn benches(c: &mut Criterion) {
    let b = backend();
    let settings = DeliverySettings::default();

    c.bench_function("issue code + ticket", |bench| {
        let mut seq = 0u64;
        bench.iter(|| {
            seq = seq.wrapping_add(1);
            black_box(b.issue("PKG-2026-000123", seq, NOW, &settings).unwrap())
        })
    });
    c.bench_function("issue + ticket to JSON", |bench| {
        bench.iter(|| {
            let issued = b.issue("PKG-2026-000123", 0, NOW, &settings).unwrap();
            black_box(issued.ticket.to_json())
        })
    });

    let issued = b.issue("PKG-2026-000123", 0, NOW, &settings).unwrap();
    let json = issued.ticket.to_json();
    c.bench_function("device: parse ticket", |bench| {
        bench.iter(|| black_box(Ticket::from_json(black_box(&json)).unwrap()))
    });

    // A fresh state each time so the attempt limit never locks the bench;
    // this includes loading and saving the state JSON, as on a phone.
    let ticket = Ticket::from_json(&json).unwrap();
    let code = issued.code.as_str().to_string();
    c.bench_function(
        "device: offline verify (right code, state load+save)",
        |bench| {
            bench.iter(|| {
                let v = OfflineVerifier::new(ticket.clone(), Arc::new(InMemoryStateStore::new()));
                black_box(v.verify(black_box(&code), NOW + 10).unwrap())
            })
        },
    );
    c.bench_function("device: offline verify (full-width digits)", |bench| {
        let typed: String = code
            .chars()
            .map(|ch| char::from_u32(0xFF10 + ch.to_digit(10).unwrap()).unwrap())
            .collect();
        bench.iter(|| {
            let v = OfflineVerifier::new(ticket.clone(), Arc::new(InMemoryStateStore::new()));
            black_box(v.verify(black_box(&typed), NOW + 10).unwrap())
        })
    });
    c.bench_function(
        "backend: online verify (MAC check + derive + store)",
        |bench| {
            bench.iter(|| {
                let fresh = backend();
                black_box(fresh.verify_online(&ticket, &code, NOW + 10, 0).unwrap())
            })
        },
    );

    let totp = Totp::new(
        Secret::from_bytes(b"12345678901234567890").unwrap(),
        TotpConfig::default(),
    )
    .unwrap();
    c.bench_function("totp generate (SHA-1, 6 digits)", |bench| {
        bench.iter(|| black_box(totp.generate(black_box(NOW)).unwrap()))
    });
}

criterion_group!(delivery, benches);
criterion_main!(delivery);
