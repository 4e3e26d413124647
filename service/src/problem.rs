//! Errors as RFC 9457 problem details (`application/problem+json`), with a
//! stable `type` per kind. No problem ever carries a code or a secret: core
//! errors are built never to hold one, and request bodies are not echoed.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::ToSchema;

/// Where the problem types live; `type` is this plus the kind.
pub const TYPE_BASE: &str = "https://delivery-otp.dev/problems/";

/// An error response.
#[derive(Debug, Clone)]
pub struct Problem {
    /// The HTTP status.
    pub status: StatusCode,
    /// Stable kind, such as `invalid_ticket` or `unauthorized`.
    pub kind: String,
    /// A sentence for the engineer reading it.
    pub detail: String,
    /// Extra members, such as `until` for a lockout.
    pub extra: serde_json::Map<String, serde_json::Value>,
}

/// The body of a problem response, as the OpenAPI document describes it.
#[derive(Debug, Serialize, ToSchema)]
pub struct ProblemBody {
    /// `https://delivery-otp.dev/problems/<kind>`.
    #[serde(rename = "type")]
    pub type_uri: String,
    /// The kind in words.
    pub title: String,
    /// The HTTP status.
    pub status: u16,
    /// What went wrong in this request.
    pub detail: String,
    /// The stable kind alone, for programs.
    pub kind: String,
}

impl Problem {
    /// A problem of `kind` with `status`.
    pub fn new(status: StatusCode, kind: &str, detail: impl Into<String>) -> Self {
        Problem {
            status,
            kind: kind.to_string(),
            detail: detail.into(),
            extra: serde_json::Map::new(),
        }
    }

    /// 400 with `kind`.
    pub fn bad_request(kind: &str, detail: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, kind, detail)
    }

    /// 401: no or an unknown token.
    pub fn unauthorized(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "unauthorized", detail)
    }

    /// 403: a token without the scope.
    pub fn forbidden(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, "forbidden", detail)
    }

    /// 404 for what the path names.
    pub fn not_found(kind: &str, detail: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, kind, detail)
    }

    /// 409: the request conflicts with what is stored.
    pub fn conflict(kind: &str, detail: impl Into<String>) -> Self {
        Self::new(StatusCode::CONFLICT, kind, detail)
    }

    /// 503: storage failed; the request may be sent again.
    pub fn unavailable(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::SERVICE_UNAVAILABLE, "unavailable", detail)
    }

    /// Adds a member to the body.
    pub fn with(mut self, name: &str, value: serde_json::Value) -> Self {
        self.extra.insert(name.to_string(), value);
        self
    }

    fn title(&self) -> String {
        let words = self.kind.replace('_', " ");
        let mut chars = words.chars();
        match chars.next() {
            Some(first) => first.to_uppercase().chain(chars).collect(),
            None => String::new(),
        }
    }

    /// The JSON body.
    pub fn body(&self) -> serde_json::Value {
        let mut body = serde_json::Map::new();
        body.insert("type".into(), format!("{TYPE_BASE}{}", self.kind).into());
        body.insert("title".into(), self.title().into());
        body.insert("status".into(), self.status.as_u16().into());
        body.insert("detail".into(), self.detail.clone().into());
        body.insert("kind".into(), self.kind.clone().into());
        for (k, v) in &self.extra {
            body.insert(k.clone(), v.clone());
        }
        serde_json::Value::Object(body)
    }
}

impl From<delivery_otp::Error> for Problem {
    fn from(e: delivery_otp::Error) -> Self {
        use delivery_otp::Error as E;
        let status = match &e {
            E::StateStorage { .. } => StatusCode::SERVICE_UNAVAILABLE,
            E::ReceiptConflict { .. } => StatusCode::CONFLICT,
            E::UnsafeSettings { .. } | E::InvalidPolicy { .. } | E::InvalidTemplate { .. } => {
                StatusCode::UNPROCESSABLE_ENTITY
            }
            _ => StatusCode::BAD_REQUEST,
        };
        Problem::new(status, e.kind(), e.to_string())
    }
}

impl IntoResponse for Problem {
    fn into_response(self) -> Response {
        let mut response = (self.status, axum::Json(self.body())).into_response();
        response.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/problem+json"),
        );
        response
    }
}
