//! `delivery-otp serve`: the delivery-otp backend as an HTTP JSON API.
//!
//! One process owns issuing, online checks, device keys and reconciliation,
//! and keeps every decision in its database (SQLite in a data directory by
//! default). Backends in any language call it with API tokens; the OpenAPI
//! 3.1 document is served at `/openapi.json`.
//!
//! - [`config`]: settings from arguments and the environment;
//! - [`db`]: the database, its migrations, one transaction per request;
//! - [`auth`]: API tokens and their scopes;
//! - [`api`]: the `/v1` operations;
//! - [`problem`]: errors as `application/problem+json`;
//! - [`webhook`]: decisions POSTed, signed, from a durable outbox.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::extract::{DefaultBodyLimit, MatchedPath, Request, State};
use axum::http::StatusCode;
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use axum::{Json, Router};
use delivery_otp::{AttemptStore, Backend, KeySet, Rules, Templates};
use metrics_exporter_prometheus::PrometheusHandle;
use utoipa::OpenApi;

pub mod api;
pub mod auth;
pub mod clock;
pub mod config;
pub mod db;
pub mod listen;
pub mod problem;
pub mod webhook;

use problem::Problem;

/// Largest request body, in bytes (an upload of 100 receipts fits).
pub const MAX_BODY_BYTES: usize = 1024 * 1024;
/// Longest a request may take before it is answered with `timeout`.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// What every handler shares.
#[derive(Clone)]
pub struct AppState {
    /// The database.
    pub db: db::Db,
    /// The core backend; each request runs it over its own transaction
    /// ([`Backend::with_store`]).
    pub backend: Backend,
    /// The risk policy.
    pub rules: Arc<Rules>,
    /// The customer message templates.
    pub templates: Arc<Templates>,
    /// The sender name in customer messages.
    pub sender: String,
    /// Renders `/metrics`.
    pub metrics: Option<PrometheusHandle>,
    /// Where decisions are POSTed, if anywhere.
    pub webhook: Option<webhook::Webhook>,
    /// Tokens seen lately.
    pub tokens: Arc<auth::TokenCache>,
    /// Where online attempts and the decision slots live when not in the
    /// database: a durable Redis shared by every instance (`--redis-url`).
    pub counters: Option<Arc<dyn AttemptStore>>,
}

/// The current unix time in seconds.
pub fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// The attempt store the shared backend starts with: every request swaps
/// in its transaction, so reaching this one is a bug, and it refuses.
struct NoStore;

impl AttemptStore for NoStore {
    fn record_attempt(
        &self,
        _: &str,
        _: &str,
        _: u32,
        _: u64,
    ) -> delivery_otp::Result<Option<u32>> {
        Err(no_store())
    }
    fn remember_first(&self, _: &str, _: &str, _: u64) -> delivery_otp::Result<Option<String>> {
        Err(no_store())
    }
    fn recall(&self, _: &str) -> delivery_otp::Result<Option<String>> {
        Err(no_store())
    }
}

fn no_store() -> delivery_otp::Error {
    delivery_otp::Error::StateStorage {
        reason: "no transaction".into(),
    }
}

impl AppState {
    /// The state for these keys, database and policy.
    pub fn new(
        keys: KeySet,
        db: db::Db,
        rules: Rules,
        templates: Templates,
        sender: String,
    ) -> Self {
        AppState {
            db,
            backend: Backend::new(keys, Arc::new(NoStore)),
            rules: Arc::new(rules),
            templates: Arc::new(templates),
            sender,
            metrics: None,
            webhook: None,
            tokens: Arc::default(),
            counters: None,
        }
    }
}

impl AppState {
    /// The core backend for one request: its attempts and decision slots in
    /// the request's transaction, or in Redis when the service counts there.
    pub fn core(&self, tx: &Arc<db::Tx>) -> Backend {
        match &self.counters {
            Some(store) => self.backend.with_store(Arc::clone(store)),
            None => self
                .backend
                .with_store(Arc::clone(tx) as Arc<dyn AttemptStore>),
        }
    }
}

/// The OpenAPI document.
#[derive(OpenApi)]
#[openapi(
    info(title = "delivery-otp", version = "1.0.0", license(name = "MIT OR Apache-2.0"),
         description = "Delivery one-time codes: issue, check online, provision courier devices, judge proof of delivery."),
    paths(
        api::issue_code, api::resend_code, api::reassign_delivery, api::get_delivery,
        api::verify_code, api::upload_receipts, api::provision_device, api::revoke_device,
        api::get_tickets, api::create_token, api::revoke_token,
    ),
    modifiers(&TokenAuth),
    tags(
        (name = "deliveries", description = "Codes, tickets and online checks"),
        (name = "devices", description = "Courier devices"),
        (name = "receipts", description = "Proof of delivery"),
        (name = "tokens", description = "API tokens"),
    )
)]
pub struct ApiDoc;

struct TokenAuth;

impl utoipa::Modify for TokenAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "token",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
        components.add_security_scheme(
            "device",
            SecurityScheme::ApiKey(utoipa::openapi::security::ApiKey::Header(
                utoipa::openapi::security::ApiKeyValue::with_description(
                    "Authorization",
                    "A courier device's signature, `DeliveryOtp-Device v=1,kid=..,courier=..,device=..,ts=..,sig=..`, \
                     over the method, path, time and body (DeviceKey.signRequest in the apps).",
                ),
            )),
        );
        // Every operation can meet these; each answers with a problem.
        let common: &[(&str, &str)] = &[
            ("400", "A malformed request (JSON, a field's value)"),
            ("401", "No credentials, or credentials that do not hold"),
            ("403", "Credentials without the right to this"),
            ("404", "Nothing at this path"),
            ("413", "A body over 1 MiB"),
            ("415", "A body that is not JSON"),
            (
                "422",
                "A body of the wrong shape (a missing, unknown or mistyped field)",
            ),
            (
                "503",
                "Storage unavailable or the request took too long; it may be sent again",
            ),
        ];
        for item in openapi.paths.paths.values_mut() {
            for operation in [
                item.get.as_mut(),
                item.post.as_mut(),
                item.put.as_mut(),
                item.delete.as_mut(),
                item.patch.as_mut(),
            ]
            .into_iter()
            .flatten()
            {
                for (status, description) in common {
                    operation
                        .responses
                        .responses
                        .entry((*status).to_string())
                        .or_insert_with(|| problem_response(description));
                }
            }
        }
    }
}

fn problem_response(
    description: &str,
) -> utoipa::openapi::RefOr<utoipa::openapi::response::Response> {
    use utoipa::openapi::content::ContentBuilder;
    use utoipa::openapi::response::ResponseBuilder;
    use utoipa::openapi::Ref;
    ResponseBuilder::new()
        .description(description)
        .content(
            "application/problem+json",
            ContentBuilder::new()
                .schema(Some(Ref::from_schema_name("ProblemBody")))
                .build(),
        )
        .build()
        .into()
}

/// The OpenAPI document as JSON, pretty-printed (as committed in
/// `service/openapi.json`).
pub fn openapi_json() -> String {
    ApiDoc::openapi().to_pretty_json().unwrap_or_default()
}

async fn healthz() -> impl IntoResponse {
    Json(serde_json::json!({ "status": "ok" }))
}

async fn readyz(State(state): State<AppState>) -> Response {
    match db::ping(&state.db).await {
        Ok(_) => Json(serde_json::json!({ "status": "ready" })).into_response(),
        Err(_) => Problem::unavailable("the database does not answer").into_response(),
    }
}

async fn metrics_text(State(state): State<AppState>) -> Response {
    match &state.metrics {
        Some(handle) => (
            [(
                axum::http::header::CONTENT_TYPE,
                "text/plain; version=0.0.4",
            )],
            handle.render(),
        )
            .into_response(),
        None => Problem::not_found("no_metrics", "metrics are off in this process").into_response(),
    }
}

async fn openapi() -> Response {
    (
        [(axum::http::header::CONTENT_TYPE, "application/json")],
        openapi_json(),
    )
        .into_response()
}

async fn not_found() -> Problem {
    Problem::not_found("no_such_path", "no operation at this path")
}

/// Times each request (by route) and answers `timeout` after
/// [`REQUEST_TIMEOUT`].
async fn observe(request: Request, next: Next) -> Response {
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "other".to_string(), |p| p.as_str().to_string());
    let method = request.method().to_string();
    let started = Instant::now();
    let response = match tokio::time::timeout(REQUEST_TIMEOUT, next.run(request)).await {
        Ok(response) => response,
        Err(_) => Problem::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "timeout",
            "the request took too long; it may be sent again",
        )
        .into_response(),
    };
    let status = response.status().as_u16().to_string();
    metrics::histogram!("delivery_otp_request_seconds", "route" => route.clone(), "method" => method.clone())
        .record(started.elapsed().as_secs_f64());
    metrics::counter!("delivery_otp_requests_total", "route" => route, "method" => method, "status" => status).increment(1);
    response
}

/// The HTTP application.
pub fn app(state: AppState) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics_text))
        .route("/openapi.json", get(openapi))
        .route("/v1/deliveries", post(api::issue_code))
        .route("/v1/deliveries/{delivery_id}", get(api::get_delivery))
        .route(
            "/v1/deliveries/{delivery_id}/resend",
            post(api::resend_code),
        )
        .route(
            "/v1/deliveries/{delivery_id}/reassign",
            post(api::reassign_delivery),
        )
        .route(
            "/v1/deliveries/{delivery_id}/verify",
            post(api::verify_code),
        )
        .route("/v1/receipts", post(api::upload_receipts))
        .route("/v1/devices", post(api::provision_device))
        .route(
            "/v1/devices/{courier_id}/{device_id}",
            delete(api::revoke_device),
        )
        .route(
            "/v1/devices/{courier_id}/{device_id}/tickets",
            get(api::get_tickets),
        )
        .route("/v1/tokens", post(api::create_token))
        .route("/v1/tokens/revoke", post(api::revoke_token))
        .route_layer(middleware::from_fn(observe))
        .fallback(not_found)
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .with_state(state)
}

/// Writes `text` to `path` readable by the owner alone (0600), creating it.
///
/// # Errors
/// The file cannot be written.
pub fn write_private(path: &Path, text: &str) -> std::io::Result<()> {
    use std::io::Write;
    #[cfg(unix)]
    use std::os::unix::fs::OpenOptionsExt;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    options.mode(0o600);
    let mut file = options.open(path)?;
    file.write_all(text.as_bytes())?;
    file.sync_all()
}

/// Sets up logging (to stderr, `RUST_LOG` to filter), runs the service on
/// a multi-threaded runtime and turns a failure into one line on stderr and
/// status 2.
pub fn run(args: config::ServeArgs) -> std::process::ExitCode {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .try_init();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            return std::process::ExitCode::from(2);
        }
    };
    match runtime.block_on(config::serve(args)) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("error: {message}");
            std::process::ExitCode::from(2)
        }
    }
}
