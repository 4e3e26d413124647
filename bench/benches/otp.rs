//! TOTP generate and verify, measured in one run against:
//! - the floor: RustCrypto HMAC plus RFC 4226 dynamic truncation, with the
//!   key set up per call ("key per call") and set up once and cloned
//!   ("pre-keyed");
//! - totp-rs 6.0.0, the usual Rust choice, with the same secret and settings.
//!
//! `scripts/bench-report` runs this and prints the ratios; BENCHMARKS.md
//! explains them.
#![allow(
    missing_docs,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::arithmetic_side_effects,
    clippy::indexing_slicing
)]

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion};
use delivery_otp::{Algorithm, Secret, Totp, TotpConfig, Window};
use hmac::digest::KeyInit;
use hmac::{Hmac, Mac};
use subtle::ConstantTimeEq;

/// A time in the middle of a 30-second step, so a window of one step on
/// each side covers three steps.
const NOW: u64 = 1_764_000_015;
const PERIOD: u64 = 30;

/// RFC 4226 section 5.3: the 31-bit value of the truncated HMAC.
fn truncate(digest: &[u8]) -> u32 {
    let offset = usize::from(digest[digest.len() - 1] & 0x0f);
    u32::from_be_bytes(digest[offset..offset + 4].try_into().unwrap()) & 0x7fff_ffff
}

/// The floor, key set up per call.
fn floor_keyed_per_call<M: Mac + KeyInit>(key: &[u8], counter: u64) -> u32 {
    let mut mac = <M as KeyInit>::new_from_slice(key).unwrap();
    mac.update(&counter.to_be_bytes());
    truncate(&mac.finalize().into_bytes()) % 1_000_000
}

/// The floor, key set up once and cloned per call.
fn floor_prekeyed<M: Mac + Clone>(keyed: &M, counter: u64) -> u32 {
    let mut mac = keyed.clone();
    mac.update(&counter.to_be_bytes());
    truncate(&mac.finalize().into_bytes()) % 1_000_000
}

/// A ±1 window, every step computed and compared in constant time, pre-keyed:
/// what a verify cannot do with less work.
fn floor_ct_window<M: Mac + Clone>(keyed: &M, step: u64, entered: u32) -> bool {
    let mut found = subtle::Choice::from(0);
    for candidate in step - 1..=step + 1 {
        found |= floor_prekeyed(keyed, candidate).ct_eq(&entered);
    }
    found.into()
}

fn one_algorithm<M>(c: &mut Criterion, ours: Algorithm, theirs: totp_rs::Algorithm, key: &[u8])
where
    M: Mac + KeyInit + Clone,
{
    let name = ours.as_str();
    let step = NOW / PERIOD;
    let mut group = c.benchmark_group(format!("otp {name}"));

    group.bench_function("floor: HMAC + truncation, key per call", |b| {
        b.iter(|| black_box(floor_keyed_per_call::<M>(black_box(key), black_box(step))))
    });
    let keyed = <M as KeyInit>::new_from_slice(key).unwrap();
    group.bench_function("floor: HMAC + truncation, pre-keyed", |b| {
        b.iter(|| black_box(floor_prekeyed(&keyed, black_box(step))))
    });

    let totp = Totp::new(
        Secret::from_bytes(key).unwrap(),
        TotpConfig {
            algorithm: ours,
            digits: 6,
            period: PERIOD,
            t0: 0,
        },
    )
    .unwrap();
    let peer = totp_rs::Builder::new()
        .with_algorithm(theirs)
        .with_digits(6)
        .with_skew(1)
        .with_step_duration(PERIOD)
        .with_secret(key.to_vec())
        .build()
        .unwrap();

    // The same code from both, or the comparison would mean nothing.
    let right = totp.generate(NOW).unwrap();
    assert_eq!(peer.generate(NOW).to_string(), right.as_str());
    let wrong = format!(
        "{:06}",
        (right.as_str().parse::<u32>().unwrap() + 1) % 1_000_000
    );
    assert_eq!(peer.check(&wrong, NOW), None);
    let window = Window {
        behind: 1,
        ahead: 1,
    };
    assert_eq!(totp.verify(&wrong, NOW, window, None).unwrap(), None);
    assert!(totp
        .verify(right.as_str(), NOW, window, None)
        .unwrap()
        .is_some());

    group.bench_function("delivery-otp: generate (code text)", |b| {
        b.iter(|| black_box(totp.generate(black_box(NOW)).unwrap()))
    });
    group.bench_function("totp-rs: generate (token)", |b| {
        b.iter(|| black_box(peer.generate(black_box(NOW))))
    });
    group.bench_function("totp-rs: generate + to_string", |b| {
        b.iter(|| black_box(peer.generate(black_box(NOW)).to_string()))
    });

    let entered = wrong.parse::<u32>().unwrap();
    group.bench_function(
        "floor: constant-time verify ±1, pre-keyed, wrong code",
        |b| b.iter(|| black_box(floor_ct_window(&keyed, black_box(step), black_box(entered)))),
    );
    group.bench_function("delivery-otp: verify ±1, wrong code", |b| {
        b.iter(|| black_box(totp.verify(black_box(&wrong), black_box(NOW), window, None)))
    });
    group.bench_function("totp-rs: check skew 1, wrong code", |b| {
        b.iter(|| black_box(peer.check(black_box(&wrong), black_box(NOW))))
    });
    // totp-rs stops at the first step that matches, so a current code costs
    // two steps and a wrong one three: timing tells them apart. Ours costs
    // the same either way.
    group.bench_function("delivery-otp: verify ±1, right code", |b| {
        b.iter(|| black_box(totp.verify(black_box(right.as_str()), black_box(NOW), window, None)))
    });
    group.bench_function("totp-rs: check skew 1, right code", |b| {
        b.iter(|| black_box(peer.check(black_box(right.as_str()), black_box(NOW))))
    });
    group.finish();
}

fn benches(c: &mut Criterion) {
    // The RFC 6238 secrets: 20, 32 and 64 bytes for the three hashes.
    one_algorithm::<Hmac<sha1::Sha1>>(
        c,
        Algorithm::Sha1,
        totp_rs::Algorithm::SHA1,
        b"12345678901234567890",
    );
    one_algorithm::<Hmac<sha2::Sha256>>(
        c,
        Algorithm::Sha256,
        totp_rs::Algorithm::SHA256,
        b"12345678901234567890123456789012",
    );
    one_algorithm::<Hmac<sha2::Sha512>>(
        c,
        Algorithm::Sha512,
        totp_rs::Algorithm::SHA512,
        b"1234567890123456789012345678901234567890123456789012345678901234",
    );
}

criterion_group!(otp, benches);
criterion_main!(otp);
