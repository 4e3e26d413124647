//! How many webhook events a second one instance's sender delivers from its
//! outbox (SQLite, in a temporary directory) to a receiver on loopback that
//! takes `DELAY` ms to answer each POST, beside the floor: the same
//! receiver POSTed to in a plain loop with no outbox, one POST at a time on
//! one kept-alive connection, and `SENDERS` at once
//! (`cargo bench -p delivery-otp-service --bench webhook_sender -- [EVENTS] [DELAY_MS...]`).
//!
//! `-- backlog WAITING DELIVERED EVENTS [DELAY_MS]` times catching up instead:
//! a PostgreSQL outbox (a fresh database on the server of
//! `DELIVERY_OTP_TEST_POSTGRES_URL`) holding `DELIVERED` events delivered and
//! `WAITING` due (a receiver back after an outage), and the events a second
//! one instance's sender delivers over its first `EVENTS`.
#![allow(
    missing_docs,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::arithmetic_side_effects,
    clippy::cast_precision_loss,
    clippy::cast_possible_truncation
)]

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use delivery_otp_service::db;
use delivery_otp_service::webhook::{self, Webhook};
use zeroize::Zeroizing;

/// POSTs under way at once in the floor's concurrent loop.
const FLOOR_SENDERS: usize = 8;

/// A receiver on a loopback port that counts POSTs and answers each 200
/// after `delay`.
async fn receiver(delay: Duration) -> (String, Arc<AtomicU64>) {
    let count = Arc::new(AtomicU64::new(0));
    let seen = Arc::clone(&count);
    // It reads the body, as a receiver checking the signature does (one
    // that does not may have its connection closed after each answer).
    let answer = move |_body: axum::body::Bytes| {
        let seen = Arc::clone(&seen);
        async move {
            if !delay.is_zero() {
                tokio::time::sleep(delay).await;
            }
            seen.fetch_add(1, Ordering::SeqCst);
            // A short body, as most receivers send.
            (axum::http::StatusCode::OK, r#"{"received":true}"#)
        }
    };
    let app = axum::Router::new().route("/hook", axum::routing::post(answer));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    (url, count)
}

/// Events a second one instance's sender (`webhook::run`) delivers from
/// `db`'s outbox to a receiver answering in `delay`, over its first `events`.
async fn sending(db: db::Db, events: u64, delay: Duration) -> f64 {
    let (url, count) = receiver(delay).await;
    let hook = Webhook::new(url, Zeroizing::new("bench-webhook-secret-0123".into()));
    let start = Instant::now();
    let sender = tokio::spawn(webhook::run(db, hook));
    while count.load(Ordering::SeqCst) < events {
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let per_second = events as f64 / start.elapsed().as_secs_f64();
    sender.abort();
    per_second
}

/// Events a second through the outbox and `webhook::run`.
async fn through_the_outbox(events: u64, delay: Duration) -> f64 {
    let dir = std::env::temp_dir().join(format!("dotp-webhook-bench-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let db = db::open_sqlite(&dir.join("db.sqlite3")).await.unwrap();
    db::transaction(&db, move |tx| {
        for i in 0..events {
            tx.enqueue_event(&format!("ev-{i:06}"), r#"{"type":"decision"}"#, 0)?;
        }
        Ok(())
    })
    .await
    .unwrap();
    let per_second = sending(db, events, delay).await;
    let _ = std::fs::remove_dir_all(&dir);
    per_second
}

/// Events a second one instance's sender delivers over its first `events`,
/// from a PostgreSQL outbox of `waiting` due events and `delivered` ones.
async fn catching_up(waiting: u64, delivered: u64, events: u64, delay: Duration) -> f64 {
    use sqlx::Connection as _;
    let base = std::env::var("DELIVERY_OTP_TEST_POSTGRES_URL")
        .expect("DELIVERY_OTP_TEST_POSTGRES_URL names the PostgreSQL server to use");
    let name = format!("webhook_backlog_{}", std::process::id());
    let mut admin = sqlx::PgConnection::connect(&base).await.unwrap();
    for sql in [
        format!("DROP DATABASE IF EXISTS {name}"),
        format!("CREATE DATABASE {name}"),
    ] {
        sqlx::query(&sql).execute(&mut admin).await.unwrap();
    }
    let url = format!("{}/{name}", base.rsplit_once('/').unwrap().0);
    let db = db::open_postgres(&url, 4).await.unwrap(); // the migrations
    let mut conn = sqlx::PgConnection::connect(&url).await.unwrap();
    let now = delivery_otp_service::now() as i64;
    for sql in [
        format!(
            "INSERT INTO webhook_outbox (event_id, payload, created_at, attempts, \
             next_attempt_at, delivered_at) SELECT 'evt_d' || g, repeat('x', 400), \
             {now} - 3000000 + g, 1, {now} - 3000000 + g, {now} - 3000000 + g \
             FROM generate_series(1::bigint, {delivered}) g"
        ),
        // Made over the last day, tried 12 times, all due again.
        format!(
            "INSERT INTO webhook_outbox (event_id, payload, created_at, attempts, \
             next_attempt_at) SELECT 'evt_w' || g, repeat('y', 400), \
             {now} - 86400 + g * 86400 / {waiting}, 12, {now} - g % 3600 \
             FROM generate_series(1::bigint, {waiting}) g"
        ),
        "VACUUM ANALYZE webhook_outbox".to_string(),
    ] {
        sqlx::query(&sql).execute(&mut conn).await.unwrap();
    }
    let per_second = sending(db, events, delay).await;
    drop(conn);
    tokio::time::sleep(Duration::from_millis(200)).await;
    let _ = sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
        .execute(&mut admin)
        .await;
    per_second
}

/// Events a second POSTed in a plain loop with one kept-alive agent,
/// `senders` at a time.
async fn floor(events: u64, delay: Duration, senders: usize) -> f64 {
    let (url, count) = receiver(delay).await;
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .max_idle_connections_per_host(senders)
        .build()
        .into();
    let start = Instant::now();
    let next = Arc::new(AtomicU64::new(0));
    let workers: Vec<_> = (0..senders)
        .map(|_| {
            let (agent, url, next) = (agent.clone(), url.clone(), Arc::clone(&next));
            tokio::task::spawn_blocking(move || {
                while next.fetch_add(1, Ordering::SeqCst) < events {
                    let mut response = agent
                        .post(&url)
                        .header("Content-Type", "application/json")
                        .send(r#"{"type":"decision"}"#)
                        .unwrap();
                    // Read to the end, so that the connection is kept.
                    response.body_mut().read_to_vec().unwrap();
                }
            })
        })
        .collect();
    for worker in workers {
        worker.await.unwrap();
    }
    assert_eq!(count.load(Ordering::SeqCst), events);
    events as f64 / start.elapsed().as_secs_f64()
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    // `cargo bench` passes `--bench`; numbers are ours.
    let numbers: Vec<u64> = std::env::args().filter_map(|a| a.parse().ok()).collect();
    if std::env::args().any(|a| a == "backlog") {
        let [waiting, delivered, events, ..] = numbers[..] else {
            eprintln!("usage: backlog WAITING DELIVERED EVENTS [DELAY_MS]");
            std::process::exit(2);
        };
        let delay_ms = numbers.get(3).copied().unwrap_or(0);
        let rate = catching_up(waiting, delivered, events, Duration::from_millis(delay_ms)).await;
        println!(
            "PostgreSQL outbox of {waiting} due and {delivered} delivered, receiver answering \
             in {delay_ms} ms: the first {events} events at {rate:.0}/s"
        );
        return;
    }
    let events = numbers.first().copied().unwrap_or(2_000);
    let delays: Vec<u64> = match numbers.get(1..) {
        Some(rest) if !rest.is_empty() => rest.to_vec(),
        _ => vec![0, 20],
    };
    for delay_ms in delays {
        let delay = Duration::from_millis(delay_ms);
        // Fewer events when each takes long, so every row runs a few seconds.
        let n = if delay_ms == 0 {
            events
        } else {
            (events / 4).max(100)
        };
        let outbox = through_the_outbox(n, delay).await;
        let one = floor(n, delay, 1).await;
        let many = floor(n, delay, FLOOR_SENDERS).await;
        println!(
            "receiver answering in {delay_ms} ms, {n} events: outbox and sender {outbox:.0}/s; \
             floor: one POST at a time {one:.0}/s, {FLOOR_SENDERS} at once {many:.0}/s"
        );
    }
}
