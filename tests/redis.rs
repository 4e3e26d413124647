//! The shared attempt store on a real Redis server: two store instances (two
//! backend machines) hammering the same delivery from many threads, a server
//! killed and restarted mid-run, a server slower than the store's timeout.
//!
//! Needs `DELIVERY_OTP_TEST_REDIS_URL` (a durable server: append-only file synced
//! on every write); `scripts/test` starts a private redis-server on a
//! loopback port and sets it. The restart and durability tests start their
//! own redis-server. Without them these tests fail: they are never skipped.
#![cfg(feature = "redis")]
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    clippy::arithmetic_side_effects
)]

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::process::{Child, Command};
use std::sync::Arc;
use std::time::{Duration, Instant};

use delivery_otp::Handover;
use delivery_otp::{
    AttemptStore, Backend, Decision, DeliverySettings, Error, InMemoryStateStore, Issued, KeySet,
    MasterKey, OfflineOutcome, OfflineVerifier, OnlineOutcome, ReceiptDetails, RedisStore, Ticket,
    Verification,
};
use rand::rngs::SysRng;
use rand::TryRng;
use zeroize::Zeroizing;

const NOW: u64 = 1_764_000_000;
const COURIER: &str = "courier-1";

fn url() -> String {
    std::env::var("DELIVERY_OTP_TEST_REDIS_URL").expect(
        "DELIVERY_OTP_TEST_REDIS_URL is not set: run scripts/test, which starts a Redis server",
    )
}

fn fresh_prefix() -> String {
    format!("test-{:016x}:", SysRng.try_next_u64().unwrap())
}

/// A store with a prefix of its own, so tests do not see each other's keys.
fn store_at(url: &str, prefix: &str) -> Arc<RedisStore> {
    Arc::new(
        RedisStore::open(url)
            .unwrap()
            .with_prefix(prefix)
            .with_timeout(Duration::from_millis(500)),
    )
}

fn keys() -> KeySet {
    KeySet::new(MasterKey::from_bytes("k1", &[42u8; 32]).unwrap())
}

/// Two backends on two store instances with the same prefix: two machines.
fn two_backends() -> (Backend, Backend) {
    let prefix = fresh_prefix();
    (
        Backend::new(keys(), store_at(&url(), &prefix)),
        Backend::new(keys(), store_at(&url(), &prefix)),
    )
}

/// `n` wrong codes that do not match the ticket's hash (so each is an
/// honest-looking wrong try, not a guess from the ticket).
fn plain_wrong_codes(issued: &Issued, n: usize) -> Vec<String> {
    (0..1_000_000u32)
        .map(|x| format!("{x:06}"))
        .filter(|c| c != issued.code.as_str())
        .filter(|c| {
            let probe =
                OfflineVerifier::new(issued.ticket.clone(), Arc::new(InMemoryStateStore::new()));
            matches!(
                probe.verify(c, NOW + 1),
                Ok(OfflineOutcome::Rejected { .. })
            )
        })
        .take(n)
        .collect()
}

fn kind(outcome: OnlineOutcome) -> String {
    match outcome {
        OnlineOutcome::Rejected { attempts_left } => format!("rejected({attempts_left})"),
        OnlineOutcome::LockedOut { .. } => "locked_out".into(),
        other => format!("{other:?}"),
    }
}

#[test]
fn many_threads_on_two_instances_never_exceed_the_attempt_limit() {
    let (a, b) = two_backends();
    let issued = a
        .issue("D-limit", 0, COURIER, NOW, &DeliverySettings::default())
        .unwrap();
    let wrong = plain_wrong_codes(&issued, 400);
    // 16 threads, 25 different wrong codes each, alternating the machines.
    let outcomes: Vec<OnlineOutcome> = std::thread::scope(|scope| {
        let handles: Vec<_> = wrong
            .chunks(25)
            .enumerate()
            .map(|(t, codes)| {
                let backend = if t % 2 == 0 { &a } else { &b };
                let ticket = &issued.ticket;
                scope.spawn(move || {
                    codes
                        .iter()
                        .map(|c| {
                            backend
                                .verify_online(ticket, c, COURIER, "phone-1", NOW + 10)
                                .unwrap()
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().unwrap())
            .collect()
    });
    let mut counts = BTreeMap::<String, usize>::new();
    for o in outcomes {
        *counts.entry(kind(o)).or_default() += 1;
    }
    println!("400 different wrong codes from 16 threads on 2 instances: {counts:?}");
    let expected: BTreeMap<String, usize> = [
        ("rejected(4)", 1),
        ("rejected(3)", 1),
        ("rejected(2)", 1),
        ("rejected(1)", 1),
        ("locked_out", 396),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    assert_eq!(counts, expected);
    // The right code after that is locked out too.
    let right = a
        .verify_online(
            &issued.ticket,
            issued.code.as_str(),
            COURIER,
            "phone-1",
            NOW + 11,
        )
        .unwrap();
    assert!(
        matches!(right, OnlineOutcome::LockedOut { .. }),
        "{right:?}"
    );
}

#[test]
fn a_right_code_is_consumed_by_one_device_and_retries_get_the_same_answer() {
    let (a, b) = two_backends();
    let issued = a
        .issue("D-once", 0, COURIER, NOW, &DeliverySettings::default())
        .unwrap();
    // 16 devices of the courier, 6 requests each (retries), on two machines.
    let results: Vec<(usize, OnlineOutcome)> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..16)
            .map(|t| {
                let backend = if t % 2 == 0 { &a } else { &b };
                let (ticket, code) = (&issued.ticket, issued.code.as_str());
                scope.spawn(move || {
                    (0..6)
                        .map(|_| {
                            let device = format!("phone-{t}");
                            (
                                t,
                                backend
                                    .verify_online(ticket, code, COURIER, &device, NOW + 10)
                                    .unwrap(),
                            )
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().unwrap())
            .collect()
    });
    let winners: BTreeSet<usize> = results
        .iter()
        .filter(|(_, o)| matches!(o, OnlineOutcome::Confirmed { .. }))
        .map(|(t, _)| *t)
        .collect();
    assert_eq!(winners.len(), 1, "{results:?}");
    for (t, o) in &results {
        if winners.contains(t) {
            assert_eq!(*o, OnlineOutcome::Confirmed { attempts_used: 1 });
        } else {
            assert_eq!(*o, OnlineOutcome::AlreadyUsed);
        }
    }
}

fn offline_receipt(backend: &Backend, issued: &Issued) -> String {
    let code = Zeroizing::new(issued.code.as_str().to_string());
    signed_receipt(backend, issued, Handover::DeliveredOffline { code })
}

/// The receipt phone-1 makes for `handover`, after checking the right code
/// offline.
fn signed_receipt(backend: &Backend, issued: &Issued, handover: Handover) -> String {
    let key = backend.provision_device(COURIER, "phone-1").unwrap();
    let phone = OfflineVerifier::new(issued.ticket.clone(), Arc::new(InMemoryStateStore::new()));
    phone.verify(issued.code.as_str(), NOW + 5).unwrap();
    let details = ReceiptDetails {
        app_version: "android/3.4.1".into(),
        ..ReceiptDetails::default()
    };
    let receipt = phone.receipt(&key, handover, NOW + 6, details).unwrap();
    receipt.to_json().to_string()
}

#[test]
fn sixteen_copies_of_a_receipt_get_one_decision() {
    let (a, b) = two_backends();
    let issued = a
        .issue("D-receipt", 0, COURIER, NOW, &DeliverySettings::default())
        .unwrap();
    let json = offline_receipt(&a, &issued);
    let results: Vec<_> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..16)
            .map(|t| {
                let backend = if t % 2 == 0 { &a } else { &b };
                let (json, ticket) = (&json, &issued.ticket);
                scope.spawn(move || backend.reconcile(json, ticket, NOW + 60).unwrap())
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let confirmed = Decision::Confirmed {
        verified: Verification::Offline,
    };
    assert!(results.iter().all(|r| r.decision == confirmed));
    assert_eq!(results.iter().filter(|r| !r.repeated).count(), 1);
}

#[test]
fn keys_expire_with_the_code_and_far_future_times_do_not_break_calls() {
    let prefix = fresh_prefix();
    let store = store_at(&url(), &prefix);
    let backend = Backend::new(keys(), store.clone());
    let issued = backend
        .issue("D-exp", 0, COURIER, NOW, &DeliverySettings::default())
        .unwrap();
    backend
        .verify_online(&issued.ticket, "000000", COURIER, "phone-1", NOW + 1)
        .unwrap();
    let mut connection = redis::Client::open(url().as_str())
        .unwrap()
        .get_connection()
        .unwrap();
    let at: i64 = redis::cmd("EXPIRETIME")
        .arg(store.redis_key("attempts:0:D-exp"))
        .query(&mut connection)
        .unwrap();
    // The code's expiry, or a minute after the server's clock if that is
    // later (NOW is in the past on a machine whose clock is right).
    let server_now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let expected = (NOW + 86_400).max(server_now + 60);
    assert!((at as u64).abs_diff(expected) <= 5, "{at} vs {expected}");
    // Issue 11, C12: times near 2^62 made every call fail while counting.
    let far = 1u64 << 62;
    let late = backend
        .issue("D-far", 0, COURIER, far, &DeliverySettings::default())
        .unwrap();
    for (i, expected_left) in [(1, 4), (2, 3)] {
        let o = backend
            .verify_online(
                &late.ticket,
                &format!("00000{i}"),
                COURIER,
                "phone-1",
                far + 1,
            )
            .unwrap();
        if o != OnlineOutcome::GuessedFromTicket {
            assert_eq!(
                o,
                OnlineOutcome::Rejected {
                    attempts_left: expected_left
                }
            );
        }
    }
    let at: i64 = redis::cmd("EXPIRETIME")
        .arg(store.redis_key("attempts:0:D-far"))
        .query(&mut connection)
        .unwrap();
    assert_eq!(at as u64, delivery_otp::store::redis::MAX_EXPIRY);
}

#[test]
fn an_unreachable_server_gives_a_typed_error_quickly() {
    // Port 1 on loopback: nothing listens there.
    let store = RedisStore::open("redis://127.0.0.1:1/")
        .unwrap()
        .with_timeout(Duration::from_millis(500));
    let started = Instant::now();
    let err = store.record_attempt("x", "a", 5, NOW).unwrap_err();
    assert!(matches!(err, Error::StateStorage { .. }), "{err:?}");
    assert!(started.elapsed() < Duration::from_secs(3));
}

/// A redis-server of the test's own, in a temporary directory, on a free
/// loopback port; killed on drop.
struct OwnServer {
    dir: PathBuf,
    port: u16,
    durable: bool,
    child: Option<Child>,
}

impl OwnServer {
    fn start(durable: bool) -> OwnServer {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let dir = std::env::temp_dir().join(format!("delivery-otp-redis-{port}"));
        std::fs::create_dir_all(&dir).unwrap();
        let mut server = OwnServer {
            dir,
            port,
            durable,
            child: None,
        };
        server.spawn();
        server
    }

    fn spawn(&mut self) {
        let mut command = Command::new("redis-server");
        command
            .args(["--bind", "127.0.0.1", "--port", &self.port.to_string()])
            .args(["--dir", self.dir.to_str().unwrap(), "--save", ""]);
        if self.durable {
            command.args(["--appendonly", "yes", "--appendfsync", "always"]);
        } else {
            command.args(["--appendonly", "no"]);
        }
        let child = command
            .stdout(std::process::Stdio::null())
            .spawn()
            .expect("redis-server (scripts/setup installs it)");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(Instant::now() < deadline, "redis-server did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// SIGKILL: a crash, no shutdown save.
    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.kill().unwrap();
            child.wait().unwrap();
        }
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }
}

impl Drop for OwnServer {
    fn drop(&mut self) {
        self.kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The server's MONITOR feed, read on a thread: every command clients send,
/// and those scripts run (marked `[0 lua]`).
struct Monitor {
    lines: Arc<std::sync::Mutex<Vec<String>>>,
    marker: redis::Connection,
}

impl Monitor {
    fn start(url: &str, port: u16) -> Monitor {
        use std::io::{BufRead, Write};
        let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
        stream.write_all(b"MONITOR\r\n").unwrap();
        let lines = Arc::new(std::sync::Mutex::new(Vec::new()));
        let sink = lines.clone();
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(stream).lines() {
                let Ok(line) = line else { return };
                // Commands appear as clients spelled them: compare in lower case.
                sink.lock().unwrap().push(line.to_lowercase());
            }
        });
        let marker = redis::Client::open(url).unwrap().get_connection().unwrap();
        let mut monitor = Monitor { lines, marker };
        monitor.mark("ready");
        monitor
    }

    /// Sends `ECHO name` and waits until the feed shows it.
    fn mark(&mut self, name: &str) {
        let _: String = redis::cmd("ECHO")
            .arg(name)
            .query(&mut self.marker)
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(5);
        let wanted = format!("\"echo\" \"{name}\"");
        while !self
            .lines
            .lock()
            .unwrap()
            .iter()
            .any(|l| l.contains(&wanted))
        {
            assert!(Instant::now() < deadline, "MONITOR never showed {name}");
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// The commands clients sent between the markers `from` and `to` (not
    /// those a script ran, nor the markers).
    fn sent_between(&self, from: &str, to: &str) -> Vec<String> {
        let lines = self.lines.lock().unwrap();
        let at = |name: &str| {
            let wanted = format!("\"echo\" \"{name}\"");
            lines.iter().position(|l| l.contains(&wanted)).unwrap()
        };
        lines[at(from) + 1..at(to)]
            .iter()
            .filter(|l| !l.contains("[0 lua]"))
            .cloned()
            .collect()
    }
}

/// Issue 13: an online check is one command to Redis, whatever it finds: a
/// wrong code, the right one (counted and kept as the entry that ended the
/// code), a retry of it, another device's try, and tries up to and past the
/// lockout.
#[test]
fn an_online_check_is_one_round_trip() {
    let server = OwnServer::start(true);
    let backend = Backend::new(keys(), store_at(&server.url(), "trips:"));
    let settings = DeliverySettings::default();
    // Warm up: the connection, the durability check, the script's first load.
    let warm = backend.issue("D-warm", 0, COURIER, NOW, &settings).unwrap();
    backend
        .verify_online(
            &warm.ticket,
            warm.code.as_str(),
            COURIER,
            "phone-1",
            NOW + 1,
        )
        .unwrap();
    let issued = backend
        .issue("D-trips", 0, COURIER, NOW, &settings)
        .unwrap();
    let locked = backend
        .issue("D-locked", 0, COURIER, NOW, &settings)
        .unwrap();
    let right = issued.code.as_str().to_string();
    let mut steps: Vec<(String, &Ticket, String, &str)> = vec![
        (
            "wrong".into(),
            &issued.ticket,
            plain_wrong_codes(&issued, 1)[0].clone(),
            "phone-1",
        ),
        ("right".into(), &issued.ticket, right.clone(), "phone-1"),
        ("retry".into(), &issued.ticket, right.clone(), "phone-1"),
        ("other device".into(), &issued.ticket, right, "phone-2"),
    ];
    for (i, code) in plain_wrong_codes(&locked, 6).into_iter().enumerate() {
        steps.push((format!("wrong {}", i + 1), &locked.ticket, code, "phone-1"));
    }
    let mut monitor = Monitor::start(&server.url(), server.port);
    let mut outcomes = Vec::new();
    for (i, (_, ticket, code, device)) in steps.iter().enumerate() {
        monitor.mark(&format!("before-{i}"));
        outcomes.push(
            backend
                .verify_online(ticket, code, COURIER, device, NOW + 2)
                .unwrap(),
        );
        monitor.mark(&format!("after-{i}"));
    }
    for (i, (what, ..)) in steps.iter().enumerate() {
        let sent = monitor.sent_between(&format!("before-{i}"), &format!("after-{i}"));
        assert_eq!(sent.len(), 1, "{what}: {:?} sent {sent:?}", outcomes[i]);
        assert!(sent[0].contains("\"evalsha\""), "{what}: {sent:?}");
    }
    assert_eq!(kind(outcomes[1]), "Confirmed { attempts_used: 2 }");
    assert_eq!(kind(outcomes[2]), "Confirmed { attempts_used: 2 }");
    assert_eq!(kind(outcomes[3]), "AlreadyUsed");
    assert_eq!(kind(outcomes[9]), "locked_out");
    println!("{} online checks, one Redis command each", steps.len());
}

/// Issue 13: twenty receipts reconciled together cost Redis one MGET for
/// their online records and one pipeline that keeps their decisions (the
/// script loaded, then one EVALSHA each), sent in two round trips; the
/// decisions are those one by one gives, and the batch sent again is all
/// repeated. A receipt on its own costs one EVALSHA (the online record read
/// and the decision kept in one script), or two commands when it claims an
/// online confirmation (the record is read first) or when an online record
/// turns up that changes the decision (a guess at the door).
#[test]
fn receipts_cost_one_round_trip_each_or_two_per_batch() {
    let server = OwnServer::start(true);
    let backend = Backend::new(keys(), store_at(&server.url(), "batch:"));
    let settings = DeliverySettings::default();
    let mut batch: Vec<(String, Ticket)> = Vec::new();
    for i in 0..20 {
        let issued = backend
            .issue(&format!("D-batch-{i}"), 0, COURIER, NOW, &settings)
            .unwrap();
        if i == 3 {
            // One delivery checked online first: its record is read in the batch.
            backend
                .verify_online(
                    &issued.ticket,
                    issued.code.as_str(),
                    COURIER,
                    "phone-1",
                    NOW + 2,
                )
                .unwrap();
        }
        batch.push((offline_receipt(&backend, &issued), issued.ticket));
    }
    let pairs: Vec<(&str, &Ticket)> = batch.iter().map(|(j, t)| (j.as_str(), t)).collect();
    let mut monitor = Monitor::start(&server.url(), server.port);
    monitor.mark("batch-start");
    let first = backend.reconcile_many(&pairs, NOW + 100);
    monitor.mark("batch-end");
    let sent = monitor.sent_between("batch-start", "batch-end");
    let count = |command: &str| {
        sent.iter()
            .filter(|l| l.contains(&format!("] \"{command}\"")))
            .count()
    };
    assert_eq!(count("mget"), 1, "{sent:?}");
    assert_eq!(count("script"), 1, "{sent:?}");
    assert_eq!(count("evalsha"), 20, "{sent:?}");
    assert_eq!(count("get"), 0, "{sent:?}");
    assert_eq!(sent.len(), 22, "{sent:?}");
    let decisions: Vec<Decision> = first
        .iter()
        .map(|r| r.as_ref().unwrap().decision.clone())
        .collect();
    assert!(
        decisions.iter().all(|d| *d
            == Decision::Confirmed {
                verified: Verification::Offline
            }),
        "{decisions:?}"
    );
    let again = backend.reconcile_many(&pairs, NOW + 200);
    assert!(again.iter().all(|r| r.as_ref().unwrap().repeated));
    // One by one. Warm up the script first (its first use loads it).
    let online_receipt = |issued: &Issued, attempts_used: i32| {
        let code = Zeroizing::new(issued.code.as_str().to_string());
        signed_receipt(
            &backend,
            issued,
            Handover::DeliveredOnline {
                code,
                attempts_used,
            },
        )
    };
    let warm = backend
        .issue("D-warm-r", 0, COURIER, NOW, &settings)
        .unwrap();
    backend
        .reconcile(&offline_receipt(&backend, &warm), &warm.ticket, NOW + 100)
        .unwrap();
    let fresh = backend
        .issue("D-single", 0, COURIER, NOW, &settings)
        .unwrap();
    let online = backend
        .issue("D-online", 0, COURIER, NOW, &settings)
        .unwrap();
    backend
        .verify_online(
            &online.ticket,
            online.code.as_str(),
            COURIER,
            "phone-1",
            NOW + 2,
        )
        .unwrap();
    let checked = backend
        .issue("D-checked", 0, COURIER, NOW, &settings)
        .unwrap();
    // A door guess online: a wrong code that matches the ticket's hash.
    let guess = (0..1_000_000)
        .map(|n| format!("{n:06}"))
        .find(|c| c != checked.code.as_str() && checked.ticket.hash_matches(c))
        .unwrap();
    let guessed = backend
        .verify_online(&checked.ticket, &guess, COURIER, "phone-2", NOW + 2)
        .unwrap();
    assert_eq!(kind(guessed), "GuessedFromTicket");
    let cases: [(&str, String, &Ticket, usize, &str); 4] = [
        (
            "an offline receipt",
            offline_receipt(&backend, &fresh),
            &fresh.ticket,
            1,
            "Confirmed",
        ),
        (
            "the same again",
            offline_receipt(&backend, &fresh),
            &fresh.ticket,
            1,
            "Confirmed",
        ),
        (
            "a receipt confirmed online",
            online_receipt(&online, 1),
            &online.ticket,
            2,
            "Confirmed",
        ),
        // A guess online, then an offline receipt: the record turns up in
        // the first step, and the receipt is judged again with it.
        (
            "an offline receipt after a guess online",
            offline_receipt(&backend, &checked),
            &checked.ticket,
            2,
            "GuessedFromTicket",
        ),
    ];
    let mut singles = Vec::new();
    for (i, (what, receipt, ticket, trips, decision)) in cases.iter().enumerate() {
        monitor.mark(&format!("single-{i}"));
        let r = backend.reconcile(receipt, ticket, NOW + 100).unwrap();
        monitor.mark(&format!("single-{i}-end"));
        let sent = monitor.sent_between(&format!("single-{i}"), &format!("single-{i}-end"));
        assert_eq!(sent.len(), *trips, "{what}: {sent:?}");
        assert!(
            format!("{:?}", r.decision).starts_with(decision),
            "{what}: {:?}",
            r.decision
        );
        singles.push(sent.len());
    }
    println!(
        "20 receipts: {} commands in two round trips; one receipt: {singles:?} (offline, again, online, offline after a guess online)",
        sent.len(),
    );
}

/// Issue 11, C12: a server killed (SIGKILL) and restarted mid-run loses
/// nothing, and the same store reconnects by itself on the next call.
#[test]
fn a_durable_server_killed_and_restarted_loses_nothing() {
    let mut server = OwnServer::start(true);
    let backend = Backend::new(keys(), store_at(&server.url(), "r:"));
    let issued = backend
        .issue("D-restart", 0, COURIER, NOW, &DeliverySettings::default())
        .unwrap();
    let wrong = plain_wrong_codes(&issued, 8);
    let check = |code: &str, device: &str| {
        backend
            .verify_online(&issued.ticket, code, COURIER, device, NOW + 10)
            .unwrap()
    };
    for (i, code) in wrong[..3].iter().enumerate() {
        assert_eq!(kind(check(code, "phone-1")), format!("rejected({})", 4 - i));
    }
    let receipt_backend_issued = backend
        .issue("D-restart-2", 0, COURIER, NOW, &DeliverySettings::default())
        .unwrap();
    let json = offline_receipt(&backend, &receipt_backend_issued);
    let first = backend
        .reconcile(&json, &receipt_backend_issued.ticket, NOW + 60)
        .unwrap();
    assert!(!first.repeated);

    server.kill();
    server.spawn();

    // Every call after the restart works (the pooled connection is dead and
    // is replaced), and every count and decision is still there.
    assert_eq!(kind(check(&wrong[3], "phone-1")), "rejected(1)");
    assert_eq!(kind(check(&wrong[4], "phone-1")), "locked_out");
    assert_eq!(kind(check(&wrong[5], "phone-1")), "locked_out");
    let again = backend
        .reconcile(&json, &receipt_backend_issued.ticket, NOW + 61)
        .unwrap();
    assert_eq!((again.decision, again.repeated), (first.decision, true));
    // A used code stays used.
    let other = backend
        .issue("D-restart-3", 0, COURIER, NOW, &DeliverySettings::default())
        .unwrap();
    let use_it = |device: &str| {
        backend
            .verify_online(
                &other.ticket,
                other.code.as_str(),
                COURIER,
                device,
                NOW + 10,
            )
            .unwrap()
    };
    assert_eq!(
        use_it("phone-1"),
        OnlineOutcome::Confirmed { attempts_used: 1 }
    );
    server.kill();
    server.spawn();
    assert_eq!(use_it("phone-2"), OnlineOutcome::AlreadyUsed);
    assert_eq!(
        use_it("phone-1"),
        OnlineOutcome::Confirmed { attempts_used: 1 }
    );
}

/// Running without persistence must be a deliberate choice.
#[test]
fn a_server_without_persistence_is_refused_unless_allowed() {
    let server = OwnServer::start(false);
    let store = RedisStore::open(&server.url()).unwrap();
    let err = store.record_attempt("x", "a", 5, NOW).unwrap_err();
    assert!(
        err.to_string().contains("appendonly yes") && err.to_string().contains("allow_volatile"),
        "{err}"
    );
    let allowed = RedisStore::open(&server.url()).unwrap().allow_volatile();
    assert_eq!(allowed.record_attempt("x", "a", 5, NOW).unwrap(), Some(1));
}

/// Issue 11, C11: with Redis slower than the store's timeout, calls fail
/// with a typed error; once it answers again, the same requests get the
/// decisions they would have got, not `already_used` or `locked_out`.
#[test]
fn a_server_slower_than_the_timeout_loses_no_decision() {
    let server = OwnServer::start(true);
    let store = store_at(&server.url(), "slow:");
    let backend = Backend::new(keys(), store);
    let issued = backend
        .issue("D-slow", 0, COURIER, NOW, &DeliverySettings::default())
        .unwrap();
    let other = backend
        .issue("D-slow-2", 0, COURIER, NOW, &DeliverySettings::default())
        .unwrap();
    let json = offline_receipt(&backend, &other);
    let mut admin = redis::Client::open(server.url().as_str())
        .unwrap()
        .get_connection()
        .unwrap();
    let pause = |admin: &mut redis::Connection| {
        let _: () = redis::cmd("CLIENT")
            .arg("PAUSE")
            .arg(1500)
            .arg("ALL")
            .query(admin)
            .unwrap();
    };
    let right = |ticket: &Ticket, code: &str| {
        backend.verify_online(ticket, code, COURIER, "phone-1", NOW + 10)
    };
    // Eight tries of the right code while Redis is slow, then one after.
    pause(&mut admin);
    for _ in 0..2 {
        let err = right(&issued.ticket, issued.code.as_str()).unwrap_err();
        assert_eq!(err.kind(), "state_storage");
    }
    std::thread::sleep(Duration::from_millis(1600));
    assert_eq!(
        right(&issued.ticket, issued.code.as_str()).unwrap(),
        OnlineOutcome::Confirmed { attempts_used: 1 }
    );
    for _ in 0..8 {
        assert_eq!(
            right(&issued.ticket, issued.code.as_str()).unwrap(),
            OnlineOutcome::Confirmed { attempts_used: 1 }
        );
    }
    // A receipt reconciled while Redis is slow: the retry gets the decision.
    pause(&mut admin);
    assert_eq!(
        backend
            .reconcile(&json, &other.ticket, NOW + 60)
            .unwrap_err()
            .kind(),
        "state_storage"
    );
    std::thread::sleep(Duration::from_millis(1600));
    let r = backend.reconcile(&json, &other.ticket, NOW + 61).unwrap();
    assert_eq!(
        r.decision,
        Decision::Confirmed {
            verified: Verification::Offline
        }
    );
}
