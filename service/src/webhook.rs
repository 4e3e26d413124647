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
/// Events sent per round.
pub const BATCH: i64 = 20;
/// How long one POST may take.
pub const SEND_TIMEOUT: Duration = Duration::from_secs(10);

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

fn post(url: &str, secret: &[u8], event_id: &str, body: &str, now: u64) -> Result<(), String> {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .timeout_global(Some(SEND_TIMEOUT))
        .http_status_as_error(false)
        .build()
        .into();
    let response = agent
        .post(url)
        .header("Content-Type", "application/json")
        .header("Webhook-Id", event_id)
        .header("Webhook-Timestamp", &now.to_string())
        .header("Webhook-Signature", &signature(secret, now, body))
        .send(body)
        .map_err(|e| e.to_string().chars().take(200).collect::<String>())?;
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
/// (other instances skip claimed rows), POSTs each, and records the result.
pub async fn run(db: Db, hook: Webhook) {
    loop {
        let claimed =
            db::transaction(&db, move |tx| Ok(tx.claim_events(crate::now(), BATCH)?)).await;
        let events = match claimed {
            Ok(events) => events,
            Err(problem) => {
                tracing::warn!(detail = %problem.detail, "webhook outbox unavailable");
                Vec::new()
            }
        };
        let busy = !events.is_empty();
        for (event_id, payload, attempts) in events {
            let (url, secret) = (hook.url.clone(), Arc::clone(&hook.secret));
            let id = event_id.clone();
            let sent = tokio::task::spawn_blocking(move || {
                post(&url, secret.as_bytes(), &id, &payload, crate::now())
            })
            .await
            .unwrap_or_else(|_| Err("the sender stopped".into()));
            let now = crate::now();
            let result = match &sent {
                Ok(()) => {
                    metrics::counter!("delivery_otp_webhooks_total", "result" => "delivered")
                        .increment(1);
                    db::transaction(&db, move |tx| Ok(tx.event_delivered(&event_id, now)?)).await
                }
                Err(error) => {
                    tracing::info!(event = %event_id, %error, "webhook not delivered; will retry");
                    metrics::counter!("delivery_otp_webhooks_total", "result" => "retry")
                        .increment(1);
                    let (error, next) = (error.clone(), now.saturating_add(backoff(attempts)));
                    db::transaction(&db, move |tx| Ok(tx.event_failed(&event_id, next, &error)?))
                        .await
                }
            };
            if let Err(problem) = result {
                tracing::warn!(detail = %problem.detail, "webhook outbox unavailable");
            }
        }
        if !busy {
            let _ = tokio::time::timeout(Duration::from_secs(1), hook.wake.notified()).await;
        }
    }
}
