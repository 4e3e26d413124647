//! Webhooks: every decision is POSTed to the configured URL, from a durable
//! outbox written in the same transaction as the decision, so a crash or a
//! restart loses none. Each delivery is signed:
//!
//! ```text
//! Webhook-Id: <event id>            (the same on every retry of one event)
//! Webhook-Timestamp: <unix seconds>
//! Webhook-Signature: v1=<hex HMAC-SHA256(secret, "<timestamp>.<body>")>
//! ```
//!
//! A 2xx answer marks the event delivered; anything else (or no answer) is
//! retried after 1, 2, 4, ... seconds, at most an hour apart: at least once,
//! so receivers deduplicate by `Webhook-Id`.

use std::sync::Arc;
use std::time::Duration;

use hmac::{KeyInit, Mac};
use rand::TryRng;
use sha2::Sha256;
use tokio::sync::Notify;
use zeroize::Zeroizing;

use crate::db::{self, Db};

/// Where decisions go, and the key they are signed with.
#[derive(Clone)]
pub struct Webhook {
    /// The receiver's URL.
    pub url: String,
    /// The signing secret (its bytes, as configured).
    pub secret: Arc<Zeroizing<String>>,
    /// Wakes the sender when an event is written.
    pub wake: Arc<Notify>,
    /// How long a claim on a batch of events lasts, in seconds.
    lease_secs: u64,
    /// How long one POST may take.
    send_timeout: Duration,
    /// POSTs under way at once.
    senders: usize,
}

impl Webhook {
    /// A webhook to `url` signed with `secret`, claiming events for
    /// [`db::CLAIM_LEASE_SECS`], giving each POST [`SEND_TIMEOUT`], with
    /// [`SENDERS`] POSTs under way at once.
    pub fn new(url: String, secret: Zeroizing<String>) -> Self {
        Self {
            url,
            secret: Arc::new(secret),
            wake: Arc::new(Notify::new()),
            lease_secs: db::CLAIM_LEASE_SECS,
            send_timeout: SEND_TIMEOUT,
            senders: SENDERS,
        }
    }

    /// The same with another lease, POST timeout and number of POSTs under
    /// way at once (tests use short times and one sender).
    ///
    /// # Errors
    /// The lease leaves no time for one POST (it must exceed the timeout,
    /// rounded up to whole seconds, and [`CLOCK_MARGIN_SECS`]), or
    /// `senders` is 0.
    pub fn with_timing(
        mut self,
        lease_secs: u64,
        send_timeout: Duration,
        senders: usize,
    ) -> Result<Self, String> {
        self.lease_secs = lease_secs;
        self.send_timeout = send_timeout;
        self.senders = senders;
        if senders == 0 {
            return Err("the webhook needs at least one sender".into());
        }
        match self.room(0) {
            Some(room) if room < lease_secs => Ok(self),
            _ => Err("the webhook's claim lease leaves no time for a POST".into()),
        }
    }

    /// When a POST started at `now` has surely ended (its timeout rounded
    /// up), with [`CLOCK_MARGIN_SECS`] more for other instances' clocks and
    /// the write that records it; `None` past `u64`.
    fn room(&self, now: u64) -> Option<u64> {
        let timeout = self
            .send_timeout
            .as_secs()
            .checked_add(u64::from(self.send_timeout.subsec_nanos() > 0))?;
        now.checked_add(timeout)?.checked_add(CLOCK_MARGIN_SECS)
    }

    /// Whether a POST may start at `now` under a claim that ends at
    /// `lease_end`: only if it ends, at its timeout, before the lease does,
    /// so that no other instance can claim and send the event meanwhile.
    fn may_start(&self, now: u64, lease_end: u64) -> bool {
        self.room(now).is_some_and(|end| end <= lease_end)
    }
}

impl std::fmt::Debug for Webhook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Webhook")
            .field("url", &self.url)
            .field("secret", &"[redacted]")
            .finish()
    }
}

/// Longest wait between two tries of one event.
pub const MAX_BACKOFF_SECS: u64 = 3600;
/// Events claimed per round: this many, or the number of senders when
/// that is more (so that every sender has an event to start).
pub const BATCH: i64 = 20;
/// How long one POST may take.
pub const SEND_TIMEOUT: Duration = Duration::from_secs(10);
/// POSTs one instance has under way at once, unless set otherwise.
pub const SENDERS: usize = 8;
/// The most POSTs one instance may be set to have under way at once.
pub const MAX_SENDERS: usize = 64;
/// The most of a receiver's answer read (to keep its connection); the rest
/// is not, and that connection is closed.
const RESPONSE_BODY_LIMIT: u64 = 64 * 1024;
/// Time kept between a POST's timeout and the end of its claim: for clocks
/// of several instances that disagree a little, and for recording the
/// result.
pub const CLOCK_MARGIN_SECS: u64 = 2;

/// A new event id: 128 random bits in hex.
///
/// # Errors
/// The operating system's random generator fails.
pub fn event_id() -> Result<String, crate::problem::Problem> {
    let mut bytes = [0u8; 16];
    rand::rngs::SysRng
        .try_fill_bytes(&mut bytes)
        .map_err(|_| crate::problem::Problem::unavailable("the random generator failed"))?;
    Ok(format!("evt_{}", hex::encode(bytes)))
}

/// The `Webhook-Signature` value for `body` at `timestamp`.
pub fn signature(secret: &[u8], timestamp: u64, body: &str) -> String {
    let mut mac = match <hmac::Hmac<Sha256> as KeyInit>::new_from_slice(secret) {
        Ok(mac) => mac,
        Err(_) => return String::new(),
    };
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body.as_bytes());
    format!("v1={}", hex::encode(mac.finalize().into_bytes()))
}

/// The wait before try number `attempts + 1`.
pub fn backoff(attempts: u64) -> u64 {
    1u64.checked_shl(u32::try_from(attempts.min(12)).unwrap_or(12))
        .unwrap_or(MAX_BACKOFF_SECS)
        .min(MAX_BACKOFF_SECS)
}

fn post(
    agent: &ureq::Agent,
    url: &str,
    secret: &[u8],
    event_id: &str,
    body: &str,
    now: u64,
) -> Result<(), String> {
    let mut response = agent
        .post(url)
        .header("Content-Type", "application/json")
        .header("Webhook-Id", event_id)
        .header("Webhook-Timestamp", &now.to_string())
        .header("Webhook-Signature", &signature(secret, now, body))
        .send(body)
        .map_err(|e| e.to_string().chars().take(200).collect::<String>())?;
    // The answer's body is read (up to 64 KiB, then dropped) so that the
    // connection can carry the next POST; one left unread is closed. Its
    // content does not matter, nor whether reading it fails.
    let _ = response
        .body_mut()
        .with_config()
        .limit(RESPONSE_BODY_LIMIT)
        .read_to_vec();
    if response.status().is_success() {
        Ok(())
    } else {
        Err(format!(
            "the receiver answered {}",
            response.status().as_u16()
        ))
    }
}

/// Sends due events until the process ends: each round claims a batch
/// (other instances skip claimed rows) and POSTs its events, up to the
/// webhook's `senders` at once over kept-alive connections, recording each
/// result as it comes. A POST starts only while it would end, at its
/// timeout, before the batch's claim does; when the claim runs short (a
/// slow receiver), the events not yet started are given back, due at once,
/// so that no other instance sends one while this one may still be sending
/// it. Events of one batch may arrive in any order.
pub async fn run(db: Db, hook: Webhook) {
    let agent = agent(&hook);
    // A claim of 20 let at most 20 of 64 senders start.
    let batch = i64::try_from(hook.senders).map_or(BATCH, |senders| senders.max(BATCH));
    let mut backlog_read: Option<tokio::time::Instant> = None;
    loop {
        if backlog_read.is_none_or(|at| at.elapsed() >= BACKLOG_EVERY) {
            backlog_read = Some(tokio::time::Instant::now());
            report_backlog(&db).await;
        }
        let (claimed_at, lease) = (crate::now(), hook.lease_secs);
        let claimed = db::transaction(
            &db,
            move |tx| Ok(tx.claim_events(claimed_at, batch, lease)?),
        )
        .await;
        let lease_end = claimed_at.saturating_add(lease);
        let events = match claimed {
            Ok(events) => events,
            Err(problem) => {
                tracing::warn!(detail = %problem.detail, "webhook outbox unavailable");
                Vec::new()
            }
        };
        let busy = !events.is_empty();
        let mut events = events.into_iter();
        let mut sending = tokio::task::JoinSet::new();
        loop {
            while sending.len() < hook.senders {
                let Some((event_id, payload, attempts)) = events.next() else {
                    break;
                };
                if !hook.may_start(crate::now(), lease_end) {
                    let unsent: Vec<String> = std::iter::once(event_id)
                        .chain(events.by_ref().map(|(id, _, _)| id))
                        .collect();
                    give_back(&db, unsent, lease_end).await;
                    break;
                }
                let event = Event {
                    id: event_id,
                    payload,
                    attempts,
                };
                sending.spawn(send(db.clone(), agent.clone(), hook.clone(), event));
            }
            if sending.join_next().await.is_none() {
                break;
            }
        }
        if !busy {
            let _ = tokio::time::timeout(Duration::from_secs(1), hook.wake.notified()).await;
        }
    }
}

/// How long delivered events stay in the outbox: 30 days, for looking
/// into what a receiver was sent.
pub const DELIVERED_KEPT_SECS: u64 = 30 * 24 * 3600;

/// Delivered events deleted per statement.
const FORGET_CHUNK: i64 = 10_000;

/// Statements of [`FORGET_CHUNK`] per call of [`forget_delivered`] at most
/// (with one call a minute, 6,000,000 events an hour).
const FORGET_CHUNKS: usize = 10;

/// Deletes events delivered more than [`DELIVERED_KEPT_SECS`] ago, in
/// chunks so that no statement holds the table long: the count deleted.
/// A failure is logged by the database layer; the next call goes on.
pub async fn forget_delivered(db: &Db) -> u64 {
    let before = crate::now().saturating_sub(DELIVERED_KEPT_SECS);
    let mut forgotten = 0u64;
    for _ in 0..FORGET_CHUNKS {
        let deleted = db::autocommit(db, move |tx| {
            Ok(tx.forget_delivered_events(before, FORGET_CHUNK)?)
        })
        .await
        .unwrap_or(0);
        forgotten = forgotten.saturating_add(deleted);
        if deleted < FORGET_CHUNK.unsigned_abs() {
            break;
        }
    }
    forgotten
}

/// How often each instance reads the outbox's backlog for `/metrics`.
pub const BACKLOG_EVERY: Duration = Duration::from_secs(5);

/// Sets the backlog gauges: `delivery_otp_webhook_backlog_events`, the
/// events not yet delivered, and `delivery_otp_webhook_oldest_waiting_seconds`,
/// how long the oldest of them has waited (0 when none). Both are the
/// outbox's, shared by every instance (so each reports the same figures);
/// a backlog that keeps growing means a receiver too slow or down.
async fn report_backlog(db: &Db) {
    match db::autocommit(db, |tx| Ok(tx.outbox_backlog()?)).await {
        Ok((waiting, oldest)) => {
            let waited = oldest.map_or(0, |at| crate::now().saturating_sub(at));
            #[allow(clippy::cast_precision_loss)]
            {
                metrics::gauge!("delivery_otp_webhook_backlog_events").set(waiting as f64);
                metrics::gauge!("delivery_otp_webhook_oldest_waiting_seconds").set(waited as f64);
            }
        }
        Err(problem) => {
            tracing::warn!(detail = %problem.detail, "webhook outbox unavailable");
        }
    }
}

/// A claimed event: its id, its body and the tries made so far.
struct Event {
    id: String,
    payload: String,
    attempts: u64,
}

/// The HTTP client every POST of one sender shares: connections kept alive
/// between POSTs (one per sender at most), and dropped after 4 s idle, before
/// common servers close theirs (Node.js after 5 s), so that a POST seldom
/// meets a connection the receiver has just closed (it would fail, and be
/// retried after the backoff). Redirects are not followed: a 3xx is a
/// failed try like any other answer but a 2xx (followed, a POST answered
/// 302 became a GET of another page, whose 200 marked an event delivered
/// that no receiver had).
fn agent(hook: &Webhook) -> ureq::Agent {
    ureq::Agent::config_builder()
        .timeout_global(Some(hook.send_timeout))
        .http_status_as_error(false)
        .max_redirects(0)
        .max_idle_connections(hook.senders)
        .max_idle_connections_per_host(hook.senders)
        .max_idle_age(Duration::from_secs(4))
        .build()
        .into()
}

/// Gives claimed events not started back to the outbox, due at once.
async fn give_back(db: &Db, unsent: Vec<String>, lease_end: u64) {
    let count = unsent.len();
    let released = db::transaction(db, move |tx| {
        Ok(tx.release_events(&unsent, lease_end, crate::now())?)
    })
    .await;
    match released {
        Ok(()) => tracing::info!(count, "webhook claim running short; events given back"),
        // Not given back: they come due when the lease ends.
        Err(problem) => {
            tracing::warn!(detail = %problem.detail, "webhook outbox unavailable");
        }
    }
}

/// POSTs one claimed event and records the result: delivered, or tried
/// once more and due again after the backoff.
async fn send(db: Db, agent: ureq::Agent, hook: Webhook, event: Event) {
    let Event {
        id,
        payload,
        attempts,
    } = event;
    let (url, secret, event_id) = (hook.url, hook.secret, id.clone());
    let sent = tokio::task::spawn_blocking(move || {
        post(
            &agent,
            &url,
            secret.as_bytes(),
            &event_id,
            &payload,
            crate::now(),
        )
    })
    .await
    .unwrap_or_else(|_| Err("the sender stopped".into()));
    let now = crate::now();
    let result = match sent {
        Ok(()) => {
            metrics::counter!("delivery_otp_webhooks_total", "result" => "delivered").increment(1);
            db::transaction(&db, move |tx| Ok(tx.event_delivered(&id, now)?)).await
        }
        Err(error) => {
            tracing::info!(event = %id, %error, "webhook not delivered; will retry");
            metrics::counter!("delivery_otp_webhooks_total", "result" => "retry").increment(1);
            let next = now.saturating_add(backoff(attempts));
            db::transaction(&db, move |tx| Ok(tx.event_failed(&id, next, &error)?)).await
        }
    };
    if let Err(problem) = result {
        tracing::warn!(detail = %problem.detail, "webhook outbox unavailable");
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Mutex;

    use super::*;

    type Seen = Arc<Mutex<Vec<String>>>;

    /// A receiver on a loopback port that notes each POST's `Webhook-Id` as
    /// it arrives, then takes `delay` to answer 200; and the most POSTs it
    /// had under way at once.
    async fn slow_receiver(delay: Duration) -> (String, Seen, Arc<AtomicUsize>) {
        let seen = Seen::default();
        let (in_flight, most) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
        let (counts, under_way, high) =
            (Arc::clone(&seen), Arc::clone(&in_flight), Arc::clone(&most));
        let answer = move |headers: axum::http::HeaderMap, _body: axum::body::Bytes| {
            let id = headers
                .get("webhook-id")
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default()
                .to_string();
            counts.lock().unwrap().push(id);
            let at_once = under_way.fetch_add(1, Ordering::SeqCst).saturating_add(1);
            high.fetch_max(at_once, Ordering::SeqCst);
            let under_way = Arc::clone(&under_way);
            async move {
                tokio::time::sleep(delay).await;
                under_way.fetch_sub(1, Ordering::SeqCst);
                axum::http::StatusCode::OK
            }
        };
        let app = axum::Router::new().route("/hook", axum::routing::post(answer));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/hook", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await });
        (url, seen, most)
    }

    /// A fresh directory for the test `name` with an SQLite database whose
    /// outbox holds `events` events, due now (`ev-00`, `ev-01`, ...).
    async fn outbox(name: &str, events: usize) -> (std::path::PathBuf, Db) {
        let dir = std::env::temp_dir().join(format!("dotp-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let db = db::open_sqlite(&dir.join("db.sqlite3")).await.unwrap();
        db::transaction(&db, move |tx| {
            for i in 0..events {
                tx.enqueue_event(&format!("ev-{i:02}"), "{}", crate::now())?;
            }
            Ok(())
        })
        .await
        .unwrap();
        (dir, db)
    }

    /// Waits (a minute at most) until each of `events` ids has arrived.
    async fn until_each_arrived(seen: &Seen, events: usize) {
        let deadline = std::time::Instant::now()
            .checked_add(Duration::from_secs(60))
            .unwrap();
        let distinct = || seen.lock().unwrap().iter().collect::<BTreeSet<_>>().len();
        while distinct() < events && std::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Two instances share an outbox of 24 events and a receiver that takes
    /// 300 ms per POST, with a 5 s claim lease, a 2 s POST timeout (room
    /// enough that no POST times out and is retried) and one POST at a time:
    /// the first instance's batch of 20 would take 6 s, longer than its
    /// claim. It sends what fits and gives the rest back; every event
    /// arrives exactly once. (Sending the whole batch regardless, as before, let the
    /// other instance claim and send the batch's tail too once the lease
    /// ended, while the first was still sending it.)
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_batch_longer_than_its_claim_is_given_back_not_sent_twice() {
        let events = 24;
        let (dir, first) = outbox("lease", events).await;
        let second = db::open_sqlite(&dir.join("db.sqlite3")).await.unwrap();
        let (url, seen, _) = slow_receiver(Duration::from_millis(300)).await;
        let hook = Webhook::new(url, Zeroizing::new("lease-test-secret-0123".into()))
            .with_timing(5, Duration::from_secs(2), 1)
            .unwrap();
        let senders = [
            tokio::spawn(run(first, hook.clone())),
            tokio::spawn(run(second, hook)),
        ];
        until_each_arrived(&seen, events).await;
        // Any POST still under way lands meanwhile.
        tokio::time::sleep(Duration::from_millis(1500)).await;
        for sender in senders {
            sender.abort();
        }
        let mut seen = seen.lock().unwrap().clone();
        seen.sort();
        let twice: BTreeSet<_> = seen.windows(2).filter(|w| w[0] == w[1]).collect();
        assert!(twice.is_empty(), "sent more than once: {twice:?}");
        assert_eq!(seen.len(), events, "every event sent: {seen:?}");
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// One instance with its default settings and 40 events for a receiver
    /// that takes 200 ms per POST: POSTs go out several at once, never more
    /// than [`SENDERS`], and each event arrives once.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn posts_go_out_several_at_once_each_event_once() {
        let events = 40;
        let (dir, db) = outbox("senders", events).await;
        let (url, seen, most) = slow_receiver(Duration::from_millis(200)).await;
        let hook = Webhook::new(url, Zeroizing::new("senders-test-secret-0123".into()));
        let sender = tokio::spawn(run(db, hook));
        until_each_arrived(&seen, events).await;
        tokio::time::sleep(Duration::from_millis(500)).await;
        sender.abort();
        let seen = seen.lock().unwrap().clone();
        assert_eq!(seen.len(), events, "each event once: {seen:?}");
        assert_eq!(seen.iter().collect::<BTreeSet<_>>().len(), events);
        let most = most.load(Ordering::SeqCst);
        assert!(
            (2..=SENDERS).contains(&most),
            "{most} POSTs at once at most"
        );
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// Events delivered more than 30 days ago are deleted; one delivered
    /// later, and one never delivered however old, stay.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn delivered_events_are_forgotten_after_thirty_days_others_stay() {
        let (dir, db) = outbox("forget", 4).await;
        let now = crate::now();
        let old = now.saturating_sub(DELIVERED_KEPT_SECS).saturating_sub(60);
        let recent = now.saturating_sub(DELIVERED_KEPT_SECS).saturating_add(60);
        db::transaction(&db, move |tx| {
            tx.event_delivered("ev-00", old)?;
            tx.event_delivered("ev-01", recent)?;
            tx.event_delivered("ev-02", now)?;
            Ok(())
        })
        .await
        .unwrap();
        assert_eq!(forget_delivered(&db).await, 1);
        assert_eq!(forget_delivered(&db).await, 0);
        let kept = db::transaction(&db, move |tx| {
            Ok((
                tx.outbox_backlog()?,
                tx.forget_delivered_events(now.saturating_add(1), 100)?,
            ))
        })
        .await
        .unwrap();
        // ev-03 still waits; ev-01 and ev-02 were still there to delete.
        assert_eq!(kept.0 .0, 1);
        assert_eq!(kept.1, 2);
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// Set to 32 senders, an instance has more POSTs under way at once than
    /// one claim of [`BATCH`] events held (each event still once).
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn more_senders_than_a_batch_all_get_events() {
        let (events, senders) = (64, 32);
        let (dir, db) = outbox("many-senders", events).await;
        let (url, seen, most) = slow_receiver(Duration::from_millis(500)).await;
        let hook = Webhook::new(url, Zeroizing::new("senders-test-secret-0123".into()))
            .with_timing(db::CLAIM_LEASE_SECS, SEND_TIMEOUT, senders)
            .unwrap();
        let sender = tokio::spawn(run(db, hook));
        until_each_arrived(&seen, events).await;
        sender.abort();
        let seen = seen.lock().unwrap().clone();
        assert_eq!(seen.iter().collect::<BTreeSet<_>>().len(), events);
        assert_eq!(seen.len(), events, "each event once");
        let most = most.load(Ordering::SeqCst);
        let batch = usize::try_from(BATCH).unwrap();
        assert!(
            (batch + 1..=senders).contains(&most),
            "{most} POSTs at once at most, with {senders} senders"
        );
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// A receiver that answers 302 to another page (which would answer 200
    /// to anything): the redirect is not followed, the try counts as failed,
    /// and the event stays due, not marked delivered.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_redirect_is_a_failed_try_not_a_delivery() {
        let (dir, db) = outbox("redirect", 1).await;
        let landed = Arc::new(AtomicUsize::new(0));
        let tried = Arc::new(AtomicUsize::new(0));
        let (on_landing, on_hook) = (Arc::clone(&landed), Arc::clone(&tried));
        let app = axum::Router::new()
            .route(
                "/hook",
                axum::routing::post(move || {
                    on_hook.fetch_add(1, Ordering::SeqCst);
                    async { axum::response::Redirect::to("/landing") }
                }),
            )
            .route(
                "/landing",
                axum::routing::any(move || {
                    on_landing.fetch_add(1, Ordering::SeqCst);
                    async { axum::http::StatusCode::OK }
                }),
            );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/hook", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await });
        let sender = tokio::spawn(run(
            db.clone(),
            Webhook::new(url, Zeroizing::new("redirect-test-secret-0123".into())),
        ));
        while tried.load(Ordering::SeqCst) == 0 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
        sender.abort();
        assert_eq!(
            landed.load(Ordering::SeqCst),
            0,
            "the redirect was followed"
        );
        // Still due (after its backoff), tried once, not delivered.
        let later = crate::now().saturating_add(60);
        let due = db::transaction(&db, move |tx| Ok(tx.claim_events(later, 10, 20)?))
            .await
            .unwrap();
        assert_eq!(due, [("ev-00".to_string(), "{}".to_string(), 1)]);
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// One sender and 20 events for a receiver that answers each with a
    /// short body: the POSTs go over one kept-alive connection (the answer
    /// is read to its end so that they can).
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn posts_share_a_kept_alive_connection() {
        let events = 20;
        let (dir, db) = outbox("keepalive", events).await;
        let peers: Arc<Mutex<Vec<std::net::SocketAddr>>> = Arc::default();
        let noted = Arc::clone(&peers);
        // It reads the POST's body, as a receiver checking the signature
        // does (hyper may close a connection whose request was left unread).
        let answer = move |axum::extract::ConnectInfo(peer): axum::extract::ConnectInfo<
            std::net::SocketAddr,
        >,
                           _body: axum::body::Bytes| {
            noted.lock().unwrap().push(peer);
            async { (axum::http::StatusCode::OK, r#"{"received":true}"#) }
        };
        let app = axum::Router::new().route("/hook", axum::routing::post(answer));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/hook", listener.local_addr().unwrap());
        tokio::spawn(async move {
            axum::serve(
                listener,
                app.into_make_service_with_connect_info::<std::net::SocketAddr>(),
            )
            .await
        });
        let hook = Webhook::new(url, Zeroizing::new("keepalive-test-secret-0123".into()))
            .with_timing(db::CLAIM_LEASE_SECS, SEND_TIMEOUT, 1)
            .unwrap();
        let sender = tokio::spawn(run(db, hook));
        let deadline = std::time::Instant::now()
            .checked_add(Duration::from_secs(60))
            .unwrap();
        while peers.lock().unwrap().len() < events && std::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        sender.abort();
        let peers = peers.lock().unwrap().clone();
        assert_eq!(peers.len(), events);
        let connections: BTreeSet<_> = peers.iter().collect();
        // One (two allowed, should a busy machine keep a connection idle
        // past its 4 s); each its own when the answers are left unread.
        assert!(
            connections.len() <= 2,
            "{events} POSTs over {} connections",
            connections.len()
        );
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_lease_must_leave_time_for_a_post() {
        let hook = || Webhook::new("http://127.0.0.1:9/".into(), Zeroizing::new("s".repeat(16)));
        // The POST's timeout rounded up, plus the margin, must fit.
        assert!(hook().with_timing(3, Duration::from_secs(1), 1).is_err());
        assert!(hook().with_timing(4, Duration::from_secs(1), 1).is_ok());
        assert!(hook()
            .with_timing(4, Duration::from_millis(1001), 1)
            .is_err());
        assert!(hook().with_timing(u64::MAX, Duration::MAX, 1).is_err());
        assert!(hook().with_timing(20, Duration::from_secs(10), 0).is_err());
        let hook = hook();
        // Claimed at 100 for 20 s: a 10 s POST may start up to 108.
        assert!(hook.may_start(108, 120));
        assert!(!hook.may_start(109, 120));
        assert!(!hook.may_start(u64::MAX, u64::MAX));
    }
}
