//! Who may call: backend callers with API tokens, each with scopes, and
//! courier devices that sign each request with their device key. A token is
//! 256 random bits; the database keeps only its SHA-256, so a copy of the
//! database cannot call the API. A device signature is checked against the
//! request's method, path, time and body, must come from a provisioned
//! device that is not revoked, and is accepted once.

use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{header, StatusCode};
use base32ct::Encoding as _;
use rand::TryRng;
use serde::de::DeserializeOwned;
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

use crate::db::{Admission, DeviceRequest};
use crate::problem::Problem;
use crate::AppState;

/// Every scope a token can have; `admin` includes all of them.
pub const SCOPES: &[&str] = &["issue", "verify", "devices", "receipts", "read", "admin"];

/// Hex SHA-256 of `bytes`.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// A new token: `dotp_` and 52 base32 characters (256 bits).
///
/// # Errors
/// The operating system's random generator fails.
pub fn new_token() -> Result<Zeroizing<String>, Problem> {
    let mut bytes = Zeroizing::new([0u8; 32]);
    rand::rngs::SysRng
        .try_fill_bytes(bytes.as_mut())
        .map_err(|_| Problem::unavailable("the random generator failed"))?;
    // Lower case base32 without padding, in constant time.
    let encoded = Zeroizing::new(base32ct::Base32Unpadded::encode_string(bytes.as_ref()));
    Ok(Zeroizing::new(format!("dotp_{}", encoded.as_str())))
}

/// The authenticated caller of a request.
#[derive(Debug, Clone)]
pub struct Caller {
    scopes: Vec<String>,
}

impl Caller {
    /// Refuses the request unless the caller has `scope` (or `admin`).
    ///
    /// # Errors
    /// `forbidden`.
    pub fn require(&self, scope: &str) -> Result<(), Problem> {
        if self.scopes.iter().any(|s| s == scope || s == "admin") {
            Ok(())
        } else {
            Err(Problem::forbidden(format!(
                "this token lacks the '{scope}' scope"
            )))
        }
    }
}

impl FromRequestParts<AppState> for Caller {
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Problem> {
        let header = parts
            .headers
            .get(header::AUTHORIZATION)
            .ok_or_else(|| Problem::unauthorized("send 'Authorization: Bearer <token>'"))?;
        let token = header
            .to_str()
            .ok()
            .and_then(|h| h.strip_prefix("Bearer "))
            .map(str::trim)
            .filter(|t| !t.is_empty() && t.len() <= 128)
            .ok_or_else(|| {
                Problem::unauthorized("the Authorization header is not 'Bearer <token>'")
            })?;
        let hash = sha256_hex(token.as_bytes());
        if let Some(scopes) = state.tokens.get(&hash) {
            return Ok(Caller { scopes });
        }
        let key = hash.clone();
        let scopes = crate::db::transaction(&state.db, move |tx| Ok(tx.token_scopes(&key)?))
            .await?
            .ok_or_else(|| Problem::unauthorized("unknown or revoked token"))?;
        let scopes: Vec<String> = scopes.split_whitespace().map(str::to_string).collect();
        state.tokens.put(hash, scopes.clone());
        Ok(Caller { scopes })
    }
}

/// Who sent a request that devices may send.
#[derive(Debug, Clone)]
pub enum Actor {
    /// A backend caller with a token.
    Backend(Caller),
    /// A courier's device, by its signature.
    Device {
        /// The courier.
        courier_id: String,
        /// The device.
        device_id: String,
    },
}

impl Actor {
    /// Whether a device (if it is one) is this courier's device; a backend
    /// caller needs `scope`.
    ///
    /// # Errors
    /// `forbidden` for a token without the scope or another device.
    pub fn may_act_for(
        &self,
        scope: &str,
        courier_id: &str,
        device_id: &str,
    ) -> Result<(), Problem> {
        match self {
            Actor::Backend(caller) => caller.require(scope),
            Actor::Device {
                courier_id: c,
                device_id: d,
            } if c == courier_id && d == device_id => Ok(()),
            Actor::Device { .. } => Err(Problem::new(
                StatusCode::FORBIDDEN,
                "not_signer",
                "a device may act only for itself",
            )),
        }
    }
}

/// A request devices may send: its sender (a token or a device signature
/// over the exact body, the device admitted) and its JSON body (`null`
/// when there is none). The device's admission (provisioned, not revoked,
/// a signature not seen before, now recorded) is a statement of its own
/// before the request's work; [`SignedInTx`] makes it part of the work's.
pub struct Signed<T> {
    /// Who sent it.
    pub actor: Actor,
    /// The body.
    pub body: T,
}

/// A request devices may send, whose device admission is left to the
/// request's own transaction ([`crate::db::guarded`],
/// [`crate::db::admitted`]): the signature is recorded with the request's
/// writes, in the same commit, or not at all. The signature over the exact
/// body is checked here; `actor` is who signed it, and a handler must pass
/// `admission` to the transaction it runs.
pub struct SignedInTx<T> {
    /// Who sent it (a device: as its signature says, not yet admitted).
    pub actor: Actor,
    /// The body.
    pub body: T,
    /// For a device's request: what its transaction admits.
    pub admission: Option<Admission>,
}

/// The answer to a signed request received before (401).
pub fn replayed_request() -> Problem {
    Problem::new(
        StatusCode::UNAUTHORIZED,
        "replayed_request",
        "this signed request was already received",
    )
}

impl DeviceRequest {
    /// Whether a device's request may go on: `Ok` for a fresh one, the
    /// refusal for a replayed one (401) or a revoked or never provisioned
    /// device (403).
    ///
    /// # Errors
    /// The refusal.
    pub fn admitted(self) -> Result<(), Problem> {
        match self {
            DeviceRequest::Fresh => Ok(()),
            DeviceRequest::Replayed => Err(replayed_request()),
            DeviceRequest::Revoked => crate::api::device_may_act(Some(false)),
            DeviceRequest::NotProvisioned => crate::api::device_may_act(None),
        }
    }
}

/// A request's sender before its device is admitted, and its body's bytes.
async fn sender(
    req: Request,
    state: &AppState,
) -> Result<(Actor, Option<Admission>, Bytes), Problem> {
    let (mut parts, body) = req.into_parts();
    let bytes = axum::body::to_bytes(body, crate::MAX_BODY_BYTES)
        .await
        .map_err(|_| {
            Problem::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "body_too_large",
                "the body is over 1 MiB",
            )
        })?;
    let authorization = parts
        .headers
        .get(header::AUTHORIZATION)
        .and_then(|h| h.to_str().ok())
        .unwrap_or_default();
    if !authorization.starts_with(delivery_otp::proof::request::SCHEME) {
        let caller = Caller::from_request_parts(&mut parts, state).await?;
        return Ok((Actor::Backend(caller), None, bytes));
    }
    let path = parts.uri.path_and_query().map_or("/", |p| p.as_str());
    let now = crate::now();
    let signed = state
        .backend
        .verify_request(authorization, parts.method.as_str(), path, &bytes, now)
        .map_err(|e| Problem::new(StatusCode::UNAUTHORIZED, e.kind(), e.to_string()))?;
    let expires_at = signed
        .timestamp
        .saturating_add(delivery_otp::proof::request::REQUEST_WINDOW_SECS.saturating_mul(2));
    let actor = Actor::Device {
        courier_id: signed.courier_id.clone(),
        device_id: signed.device_id.clone(),
    };
    let admission = Admission {
        courier_id: signed.courier_id,
        device_id: signed.device_id,
        signature: signed.signature,
        expires_at,
        now,
    };
    Ok((actor, Some(admission), bytes))
}

/// The body as JSON (`null` when empty): 400 when it is not JSON, 422 when
/// it is not the request's shape.
fn json_body<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, Problem> {
    let text: &[u8] = if bytes.is_empty() { b"null" } else { bytes };
    serde_json::from_slice(text).map_err(|e| {
        let status = if e.is_data() {
            StatusCode::UNPROCESSABLE_ENTITY
        } else {
            StatusCode::BAD_REQUEST
        };
        let detail: String = e.to_string().chars().take(300).collect();
        Problem::new(status, "invalid_body", detail)
    })
}

impl<T: DeserializeOwned> FromRequest<AppState> for Signed<T> {
    type Rejection = Problem;

    async fn from_request(req: Request, state: &AppState) -> Result<Self, Problem> {
        let (actor, admission, bytes) = sender(req, state).await?;
        if let Some(admission) = admission {
            // One statement on PostgreSQL, outside a transaction. If a kept
            // connection turns out dead, it is sent again on a new one; it
            // cannot have run then, as the server never had it (or lost it
            // uncommitted in a crash).
            crate::db::autocommit(&state.db, move |tx| Ok(tx.admit(&admission)?))
                .await?
                .admitted()?;
        }
        let body = json_body(&bytes)?;
        Ok(Signed { actor, body })
    }
}

impl<T: DeserializeOwned> FromRequest<AppState> for SignedInTx<T> {
    type Rejection = Problem;

    async fn from_request(req: Request, state: &AppState) -> Result<Self, Problem> {
        let (actor, admission, bytes) = sender(req, state).await?;
        let body = json_body(&bytes)?;
        Ok(SignedInTx {
            actor,
            body,
            admission,
        })
    }
}

/// Known tokens' scopes by hash, for [`TOKEN_CACHE_SECS`]: most requests
/// then need no database round trip to authenticate. Bounded; a token
/// revoked in the database stops working within that time.
#[derive(Debug, Default)]
pub struct TokenCache {
    entries: std::sync::Mutex<std::collections::HashMap<String, (Vec<String>, std::time::Instant)>>,
}

/// How long a token's scopes are kept in memory.
pub const TOKEN_CACHE_SECS: u64 = 10;
/// Most tokens kept in memory; the cache starts over when full.
pub const TOKEN_CACHE_MAX: usize = 1024;

impl TokenCache {
    fn get(&self, hash: &str) -> Option<Vec<String>> {
        let entries = self
            .entries
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        entries
            .get(hash)
            .filter(|(_, at)| at.elapsed() < std::time::Duration::from_secs(TOKEN_CACHE_SECS))
            .map(|(scopes, _)| scopes.clone())
    }

    /// Forgets a token at once (it was revoked); other instances forget it
    /// within [`TOKEN_CACHE_SECS`].
    pub fn forget(&self, hash: &str) {
        self.entries
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .remove(hash);
    }

    fn put(&self, hash: String, scopes: Vec<String>) {
        let mut entries = self
            .entries
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if entries.len() >= TOKEN_CACHE_MAX {
            entries.clear();
        }
        entries.insert(hash, (scopes, std::time::Instant::now()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_new_token_is_32_random_bytes_in_lower_case_base32() {
        let (a, b) = (new_token().unwrap(), new_token().unwrap());
        for token in [&a, &b] {
            let body = token.strip_prefix("dotp_").unwrap();
            assert_eq!(body.len(), 52);
            assert!(body
                .bytes()
                .all(|c| c.is_ascii_lowercase() || (b'2'..=b'7').contains(&c)));
        }
        assert_ne!(a.as_str(), b.as_str());
    }
}
