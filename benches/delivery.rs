//! Issuing (code plus ticket) on the backend, verifying on the device and
//! online, receipts and their reconciliation (in memory, and on Redis over
//! loopback with the `redis` feature and `DELIVERY_OTP_TEST_REDIS_URL`), and an
//! RFC 6238 TOTP for scale. `scripts/bench` runs it with a Redis server.
#![allow(
    missing_docs,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::arithmetic_side_effects
)]

use std::hint::black_box;
use std::sync::Arc;

use criterion::{criterion_group, criterion_main, BatchSize, Criterion};
#[cfg(feature = "redis")]
use delivery_otp::AttemptStore;
use delivery_otp::Handover;
use delivery_otp::{
    Backend, DeliverySettings, DeviceKey, InMemoryAttemptStore, InMemoryStateStore, KeySet,
    MasterKey, OfflineVerifier, ReceiptDetails, ReceiptDraft, ReceiptOutcome, Secret, Ticket, Totp,
    TotpConfig, Verification,
};
use zeroize::Zeroizing;

#[path = "shared.rs"]
mod shared;
use shared::{cpu, fresh_receipt, sha_backend, NOW};

fn backend() -> Backend {
    let keys = KeySet::new(MasterKey::from_bytes("bench", &[42u8; 32]).unwrap());
    Backend::new(keys, Arc::new(InMemoryAttemptStore::new()))
}

fn benches(c: &mut Criterion) {
    println!("CPU: {}", cpu());
    println!("SHA-256 backend: {}", sha_backend());
    let b = backend();
    let settings = DeliverySettings::default();

    c.bench_function("issue code + ticket", |bench| {
        let mut seq = 0u64;
        bench.iter(|| {
            seq = seq.wrapping_add(1);
            black_box(
                b.issue("PKG-2026-000123", seq, "courier-17", NOW, &settings)
                    .unwrap(),
            )
        })
    });
    c.bench_function("issue + ticket to JSON", |bench| {
        bench.iter(|| {
            let issued = b
                .issue("PKG-2026-000123", 0, "courier-17", NOW, &settings)
                .unwrap();
            black_box(issued.ticket.to_json())
        })
    });

    let issued = b
        .issue("PKG-2026-000123", 0, "courier-17", NOW, &settings)
        .unwrap();
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
                black_box(
                    fresh
                        .verify_online(&ticket, &code, "courier-17", "phone-1", NOW + 10)
                        .unwrap(),
                )
            })
        },
    );

    // Receipts. Signing alone, then what the phone does at the door: a
    // verify, the receipt, and storing it.
    let device_key = b.provision_device("courier-17", "pixel-8-0042").unwrap();
    let delivered = || ReceiptOutcome::Delivered {
        code: Zeroizing::new(code.clone()),
        verified: Verification::Offline,
    };
    let handover = || Handover::DeliveredOffline {
        code: Zeroizing::new(code.clone()),
    };
    let extras = ReceiptDetails {
        app_version: "android/3.4.1".into(),
        ..ReceiptDetails::default()
    };
    let draft = ReceiptDraft::for_ticket(&ticket, delivered(), 1, NOW + 20, "android/3.4.1");
    c.bench_function("device: sign a receipt", |bench| {
        bench.iter(|| black_box(device_key.sign(black_box(draft.clone())).unwrap()))
    });
    c.bench_function("device: sign a receipt + to JSON", |bench| {
        bench.iter(|| black_box(device_key.sign(draft.clone()).unwrap().to_json()))
    });
    c.bench_function("device: verify + receipt + store", |bench| {
        bench.iter(|| {
            let v = OfflineVerifier::new(ticket.clone(), Arc::new(InMemoryStateStore::new()));
            v.verify(&code, NOW + 10).unwrap();
            black_box(
                v.receipt(&device_key, handover(), NOW + 20, extras.clone())
                    .unwrap(),
            )
        })
    });

    let receipt_json = device_key.sign(draft.clone()).unwrap().to_json();
    c.bench_function("backend: parse a receipt", |bench| {
        bench
            .iter(|| black_box(delivery_otp::Receipt::from_json(black_box(&receipt_json)).unwrap()))
    });
    c.bench_function("backend: provision (derive) a device key", |bench| {
        bench.iter(|| black_box(b.provision_device("courier-17", "pixel-8-0042").unwrap()))
    });

    // Reconciliation: every receipt is new (a fresh delivery), so each call
    // takes the whole path (parse, MAC, remember, derive, compare).
    let in_memory = backend();
    bench_reconcile(
        c,
        "backend: reconcile (in memory)",
        &in_memory,
        &device_key,
        "mem",
    );
    #[cfg(feature = "redis")]
    match std::env::var("DELIVERY_OTP_TEST_REDIS_URL") {
        Ok(url) => {
            let prefix = format!("bench-{}:", std::process::id());
            let store = delivery_otp::RedisStore::open(&url)
                .unwrap()
                .with_prefix(&prefix);
            let on_redis = Backend::new(backend().keys().clone(), Arc::new(store));
            bench_reconcile(
                c,
                "backend: reconcile (Redis, loopback)",
                &on_redis,
                &device_key,
                "redis",
            );
            bench_reconcile_batch(
                c,
                "backend: reconcile 100 as one batch (Redis, loopback)",
                &on_redis,
                &device_key,
                "redis-batch",
            );
            // A right online code: one script on Redis (the code ends, the
            // entry is kept), beside the bare round trip below.
            let mut delivery = 0u64;
            c.bench_function(
                "backend: online verify, right code (Redis, loopback)",
                |bench| {
                    bench.iter_batched(
                        || {
                            delivery += 1;
                            on_redis
                                .issue(
                                    &format!("ONLINE-{delivery}"),
                                    0,
                                    "courier-17",
                                    NOW,
                                    &DeliverySettings::default(),
                                )
                                .unwrap()
                        },
                        |issued| {
                            black_box(
                                on_redis
                                    .verify_online(
                                        &issued.ticket,
                                        issued.code.as_str(),
                                        "courier-17",
                                        "pixel-8-0042",
                                        NOW + 10,
                                    )
                                    .unwrap(),
                            )
                        },
                        BatchSize::SmallInput,
                    )
                },
            );
            let store = delivery_otp::RedisStore::open(&url)
                .unwrap()
                .with_prefix(&prefix);
            let mut n = 0u64;
            c.bench_function("redis store: record_attempt (loopback)", |bench| {
                bench.iter(|| {
                    n += 1;
                    black_box(
                        store
                            .record_attempt(&format!("k:{n}:D"), "attempt", 5, NOW + 3600)
                            .unwrap(),
                    )
                })
            });
        }
        Err(_) => println!("DELIVERY_OTP_TEST_REDIS_URL is not set: the Redis benches did not run"),
    }

    let totp = Totp::new(
        Secret::from_bytes(b"12345678901234567890").unwrap(),
        TotpConfig::default(),
    )
    .unwrap();
    c.bench_function("totp generate (SHA-1, 6 digits)", |bench| {
        bench.iter(|| black_box(totp.generate(black_box(NOW)).unwrap()))
    });
}

fn bench_reconcile(c: &mut Criterion, name: &str, b: &Backend, key: &DeviceKey, tag: &str) {
    let mut n = 0u64;
    c.bench_function(name, |bench| {
        bench.iter_batched(
            || {
                n += 1;
                fresh_receipt(b, key, tag, n)
            },
            |(json, ticket)| black_box(b.reconcile(&json, &ticket, NOW + 100).unwrap()),
            BatchSize::SmallInput,
        )
    });
}

/// 100 fresh receipts reconciled as one batch (divide by 100 for one receipt).
#[cfg(feature = "redis")]
fn bench_reconcile_batch(c: &mut Criterion, name: &str, b: &Backend, key: &DeviceKey, tag: &str) {
    let mut n = 0u64;
    c.bench_function(name, |bench| {
        bench.iter_batched(
            || {
                (0..100)
                    .map(|_| {
                        n += 1;
                        fresh_receipt(b, key, tag, n)
                    })
                    .collect::<Vec<_>>()
            },
            |batch| {
                let pairs: Vec<(&str, &Ticket)> =
                    batch.iter().map(|(j, t)| (j.as_str(), t)).collect();
                black_box(b.reconcile_many(&pairs, NOW + 100))
            },
            BatchSize::SmallInput,
        )
    });
}

criterion_group!(delivery, benches);
criterion_main!(delivery);
