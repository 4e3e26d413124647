//! The shared attempt store on a real Redis server: two store instances (two
//! backend machines) hammering the same delivery from many threads.
//!
//! Needs `DELIVERY_OTP_REDIS_URL`; `scripts/test` starts a private
//! redis-server on a loopback port and sets it. Without it these tests fail:
//! they are never skipped.
#![cfg(feature = "redis")]
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    clippy::arithmetic_side_effects
)]

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use delivery_otp::{
    AttemptStore, Backend, Decision, DeliverySettings, Error, InMemoryStateStore, KeySet,
    MasterKey, OfflineVerifier, OnlineOutcome, ReceiptExtras, ReceiptOutcome, RedisStore,
    Verification,
};
use rand::rngs::SysRng;
use rand::TryRng;
use zeroize::Zeroizing;

const NOW: u64 = 1_764_000_000;

fn url() -> String {
    std::env::var("DELIVERY_OTP_REDIS_URL")
        .expect("DELIVERY_OTP_REDIS_URL is not set: run scripts/test, which starts a Redis server")
}

/// A store with a prefix of its own, so tests do not see each other's keys.
fn store(prefix: &str) -> Arc<RedisStore> {
    Arc::new(RedisStore::open(&url()).unwrap().with_prefix(prefix))
}

fn fresh_prefix() -> String {
    format!("test-{:016x}:", SysRng.try_next_u64().unwrap())
}

fn keys() -> KeySet {
    KeySet::new(MasterKey::from_bytes("k1", &[42u8; 32]).unwrap())
}

/// Two backends on two store instances with the same prefix: two machines.
fn two_backends() -> (Backend, Backend, Arc<RedisStore>) {
    let prefix = fresh_prefix();
    let a = store(&prefix);
    let b = store(&prefix);
    (Backend::new(keys(), a.clone()), Backend::new(keys(), b), a)
}

fn wrong_code(right: &str) -> String {
    let mut wrong: Vec<u8> = right.bytes().collect();
    wrong[0] = if wrong[0] == b'9' { b'0' } else { wrong[0] + 1 };
    String::from_utf8(wrong).unwrap()
}

/// Runs `calls` verifications from each of `threads` threads, alternating the
/// two backends, and counts the outcomes by kind.
fn hammer(
    a: &Backend,
    b: &Backend,
    ticket: &delivery_otp::Ticket,
    entered: &str,
    threads: usize,
    calls: usize,
) -> BTreeMap<String, usize> {
    let results = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                let backend = if t % 2 == 0 { a } else { b };
                scope.spawn(move || {
                    (0..calls)
                        .map(|_| backend.verify_online(ticket, entered, NOW + 10, 0).unwrap())
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().unwrap())
            .collect::<Vec<_>>()
    });
    let mut counts = BTreeMap::new();
    for outcome in results {
        let kind = match outcome {
            OnlineOutcome::Rejected { attempts_left } => format!("rejected({attempts_left})"),
            OnlineOutcome::Confirmed { .. } => "confirmed".into(),
            OnlineOutcome::AlreadyUsed => "already_used".into(),
            OnlineOutcome::LockedOut { .. } => "locked_out".into(),
            other => format!("{other:?}"),
        };
        *counts.entry(kind).or_default() += 1;
    }
    counts
}

#[test]
fn many_threads_on_two_instances_never_exceed_the_attempt_limit() {
    let (a, b, _) = two_backends();
    let settings = DeliverySettings::default(); // 5 attempts
    let issued = a.issue("D-limit", 0, NOW, &settings).unwrap();
    let wrong = wrong_code(issued.code.as_str());
    let counts = hammer(&a, &b, &issued.ticket, &wrong, 16, 25);
    println!("400 wrong codes from 16 threads on 2 instances: {counts:?}");
    // Attempts 1 to 4 are told how many are left, each exactly once; the 5th
    // and every later one are locked out. So no more than 5 comparisons ran.
    let expected: BTreeMap<String, usize> = [
        ("locked_out".to_string(), 396),
        ("rejected(1)".to_string(), 1),
        ("rejected(2)".to_string(), 1),
        ("rejected(3)".to_string(), 1),
        ("rejected(4)".to_string(), 1),
    ]
    .into_iter()
    .collect();
    assert_eq!(counts, expected);
    // After the lockout the right code is refused too.
    assert!(matches!(
        b.verify_online(&issued.ticket, issued.code.as_str(), NOW + 20, 0)
            .unwrap(),
        OnlineOutcome::LockedOut { .. }
    ));
}

#[test]
fn a_right_code_is_consumed_exactly_once_across_instances() {
    let (a, b, _) = two_backends();
    let settings = DeliverySettings {
        max_attempts: 100,
        ..DeliverySettings::default()
    };
    let issued = a.issue("D-once", 0, NOW, &settings).unwrap();
    let counts = hammer(&a, &b, &issued.ticket, issued.code.as_str(), 16, 6);
    println!("96 right codes from 16 threads on 2 instances: {counts:?}");
    assert_eq!(counts.get("confirmed"), Some(&1), "{counts:?}");
    assert_eq!(counts.get("already_used"), Some(&95), "{counts:?}");
}

#[test]
fn a_receipt_is_reconciled_once_and_then_seen_as_replayed() {
    let (a, b, _) = two_backends();
    let issued = a
        .issue("D-receipt", 0, NOW, &DeliverySettings::default())
        .unwrap();
    let device_key = a.provision_device("courier-1", "phone-1").unwrap();
    let verifier = OfflineVerifier::new(issued.ticket.clone(), Arc::new(InMemoryStateStore::new()));
    verifier.verify(issued.code.as_str(), NOW + 5).unwrap();
    let receipt = verifier
        .receipt(
            &device_key,
            ReceiptOutcome::Delivered {
                code: Zeroizing::new(issued.code.as_str().into()),
                verified: Verification::Offline,
            },
            0,
            NOW + 6,
            ReceiptExtras {
                app_version: "test/1".into(),
                ..ReceiptExtras::default()
            },
        )
        .unwrap();
    let json = receipt.to_json();
    let decisions = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..16)
            .map(|t| {
                let backend = if t % 2 == 0 { &a } else { &b };
                let json = json.as_str();
                scope.spawn(move || backend.reconcile(json, 0, NOW + 60).unwrap().decision)
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().unwrap())
            .collect::<Vec<_>>()
    });
    let confirmed = decisions
        .iter()
        .filter(|d| matches!(d, Decision::Confirmed { .. }))
        .count();
    let replayed = decisions
        .iter()
        .filter(|d| **d == Decision::Replayed)
        .count();
    assert_eq!((confirmed, replayed), (1, 15), "{decisions:?}");
}

#[test]
fn keys_expire_with_the_code() {
    let prefix = fresh_prefix();
    let store = store(&prefix);
    let client = redis::Client::open(url()).unwrap();
    let mut con = client.get_connection().unwrap();
    let server_now: u64 = {
        let (secs, _micros): (u64, u64) = redis::cmd("TIME").query(&mut con).unwrap();
        secs
    };
    let expires_at = server_now + 3600;
    store.record_attempt("k1:0:D-ttl", expires_at).unwrap();
    assert!(store.consume("k1:0:D-ttl", expires_at).unwrap());
    assert_eq!(
        store
            .remember_first("receipt:x", "mac-1", expires_at)
            .unwrap(),
        None
    );
    assert_eq!(
        store
            .remember_first("receipt:x", "mac-2", expires_at)
            .unwrap(),
        Some("mac-1".to_string())
    );
    for key in [
        "attempts:k1:0:D-ttl",
        "consumed:k1:0:D-ttl",
        "first:receipt:x",
    ] {
        let at: i64 = redis::cmd("EXPIRETIME")
            .arg(store.redis_key(key))
            .query(&mut con)
            .unwrap();
        assert_eq!(at, expires_at as i64, "{key}");
    }
    // An expiry already past is kept for a minute of the server's clock, so
    // a backend whose clock runs ahead cannot reset a count.
    store.record_attempt("k1:0:D-past", 1).unwrap();
    let ttl: i64 = redis::cmd("TTL")
        .arg(store.redis_key("attempts:k1:0:D-past"))
        .query(&mut con)
        .unwrap();
    assert!((55..=60).contains(&ttl), "{ttl}");
    assert_eq!(store.record_attempt("k1:0:D-past", 1).unwrap(), 2);
}

#[test]
fn an_unreachable_server_gives_a_typed_error_quickly() {
    // Port 9 (discard) on loopback: nothing listens there.
    let store = Arc::new(
        RedisStore::open("redis://127.0.0.1:9/")
            .unwrap()
            .with_timeout(Duration::from_millis(500)),
    );
    let backend = Backend::new(keys(), store.clone());
    let issued = backend
        .issue("D-down", 0, NOW, &DeliverySettings::default())
        .unwrap();
    let started = Instant::now();
    let result = backend.verify_online(&issued.ticket, issued.code.as_str(), NOW + 1, 0);
    match result {
        Err(Error::StateStorage { reason }) => {
            assert!(reason.starts_with("Redis"), "{reason}");
            assert!(!reason.contains(issued.code.as_str()), "{reason}");
        }
        other => panic!("{other:?}"),
    }
    assert!(started.elapsed() < Duration::from_secs(5));
    assert!(matches!(
        store.remember_first("x", "y", NOW),
        Err(Error::StateStorage { .. })
    ));
    assert!(matches!(
        RedisStore::open("not a url"),
        Err(Error::StateStorage { .. })
    ));
}

#[test]
fn after_a_failure_the_next_call_counts_once() {
    // A store whose first connection fails (wrong port) counts nothing; the
    // same request sent to the working store then counts exactly once.
    let prefix = fresh_prefix();
    let down = RedisStore::open("redis://127.0.0.1:9/")
        .unwrap()
        .with_prefix(&prefix)
        .with_timeout(Duration::from_millis(300));
    let up = store(&prefix);
    assert!(down.record_attempt("k1:0:D-retry", NOW + 3600).is_err());
    assert_eq!(up.record_attempt("k1:0:D-retry", NOW + 3600).unwrap(), 1);
}
