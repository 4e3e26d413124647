//! Who may call: backend callers with API tokens, each with scopes. A token
//! is 256 random bits; the database keeps only its SHA-256, so a copy of the
//! database cannot call the API.

use axum::extract::FromRequestParts;
use axum::http::header;
use axum::http::request::Parts;
use rand::TryRng;
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

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
    let encoded = base32::encode(base32::Alphabet::Rfc4648 { padding: false }, bytes.as_ref());
    Ok(Zeroizing::new(format!(
        "dotp_{}",
        encoded.to_ascii_lowercase()
    )))
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
        let scopes = crate::db::transaction(&state.db, move |tx| Ok(tx.token_scopes(&hash)?))
            .await?
            .ok_or_else(|| Problem::unauthorized("unknown or revoked token"))?;
        Ok(Caller {
            scopes: scopes.split_whitespace().map(str::to_string).collect(),
        })
    }
}
